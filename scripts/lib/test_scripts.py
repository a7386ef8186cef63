"""Every Python script in scripts/ starts: its imports resolve and `--help` exits 0.

A benchmark that fails on an import only shows when someone runs it, after a long build; a
moved helper (pyplot left benchlib for plots) broke scripts/bench-mlaas that way."""
import os
import subprocess
import sys
import unittest

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_scripts():
    for name in sorted(os.listdir(SCRIPTS)):
        path = os.path.join(SCRIPTS, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                first = f.readline()
            if first.startswith(b"#!") and b"python" in first:
                yield name, path


class ScriptsStart(unittest.TestCase):
    def test_every_python_script_answers_help(self):
        scripts = list(python_scripts())
        self.assertGreater(len(scripts), 5, "found too few scripts: is SCRIPTS right?")
        for name, path in scripts:
            with self.subTest(script=name):
                done = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True, timeout=60)
                self.assertEqual(done.returncode, 0, f"{name} --help: {done.stderr.strip()[-500:]}")


if __name__ == "__main__":
    unittest.main()
