"""Checks of the chart conventions that a wrong drawing would silently break: a missing value is
written "n/a" and never drawn as a bar of 0, the footer names the device, the rounds and the
spread, and one round says it has no spread. Run: python3 -m unittest discover -s scripts/lib"""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import charts  # noqa: E402
import plots  # noqa: E402


def drawn_figure(draw, report):
    """Draws `report` and returns the figure instead of only writing it."""
    captured = {}
    original = plots.save

    def keep(fig, plt, path, bottom):
        captured["fig"] = fig
        original(fig, plt, path, bottom)

    plots.save = keep
    try:
        with tempfile.TemporaryDirectory() as directory:
            if not draw(report, os.path.join(directory, "x.json"), os.path.join(directory, "x.png"), lambda _: None):
                raise unittest.SkipTest("matplotlib unavailable")
    finally:
        plots.save = original
    return captured["fig"]


def texts(fig):
    return [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]


class ConventionTests(unittest.TestCase):
    def test_spread_ignores_missing_values(self):
        self.assertEqual(plots.spread([3, None, 1, 2]), (2, 1, 3))
        self.assertEqual(plots.spread([None]), (None, None, None))

    def test_one_round_says_it_has_no_spread(self):
        self.assertEqual(plots.rounds_label(1), "1 round, no spread")
        self.assertIn("3 rounds", plots.rounds_label(3))

    def test_device_falls_back_to_what_the_json_knows(self):
        self.assertEqual(plots.device_label({"device": "llvmpipe (LLVM 15.0.6, 256 bits)", "backend": "vulkan"}),
                         "llvmpipe (LLVM 15.0.6, 256 bits)")
        self.assertIn("not recorded", plots.device_label({"backend": "vulkan"}))
        self.assertEqual(plots.device_label({"backend": "cpu"}), "CPU reference backend")

    def test_a_missing_value_is_na_not_a_bar_of_zero(self):
        row = {"name": "para-vGPU", "sync_us_1": None, "qd_us_1": 20.0, "userspace_exits_per_submission": 0.0,
               "train_ms": 800}
        report = {"backend": "cpu", "rounds": 1, "native_train_ms": 750, "configurations": [row],
                  "rounds_detail": {}, "native_rounds": []}
        fig = drawn_figure(charts.draw_gvmcs, report)
        first_panel = fig.axes[0]
        self.assertEqual([p for p in first_panel.patches], [], "a missing value drew a bar")
        self.assertIn(" n/a", [t.get_text() for t in first_panel.texts])

    def test_the_footer_names_device_rounds_and_load(self):
        report = {"device": "CPU reference", "rounds": 3, "epochs": 20, "goal": 1.02, "vm_over_native": 1.05,
                  "host_load": {"cpus": 2, "before": 1.0, "after": 1.5},
                  "native_rounds": [{"train_ms": 100, "exit": 0}, {"train_ms": 110, "exit": 0}, {"train_ms": 90, "exit": 0}],
                  "vm_rounds": [{"train_ms": 105, "exit": 0}, {"train_ms": 115, "exit": 0}, {"train_ms": 95, "exit": 0}]}
        footer = "\n".join(texts(drawn_figure(charts.draw_vgpu, report)))
        self.assertIn("device: CPU reference", footer)
        self.assertIn("median of 3 rounds, whiskers min-max", footer)
        self.assertIn("host load 1.0-1.5 on 2 CPUs", footer)

    def test_mlaas_says_native_has_no_vcpu_and_names_the_rounds(self):
        run = lambda ms, busy: {"train_ms": ms, "vcpu_busy_ms": busy, "gpu_utilisation_pct": 90.0, "test_acc": 97.1}
        report = {"device": "llvmpipe", "rounds": 2, "epochs": 5, "records": 4000, "goal_vm_mlaas_over_native": 1.05,
                  "runs": {"native": [run(100, None), run(110, None)], "vm-guest": [run(130, 20), run(140, 25)],
                           "vm-mlaas": [run(103, 1), run(112, 1)]}}
        fig = drawn_figure(charts.draw_mlaas, report)
        self.assertIn(" n/a", [t.get_text() for t in fig.axes[1].texts])
        self.assertEqual(len(fig.axes[1].patches), 2, "native drew a vCPU bar")
        self.assertIn("median of 2 rounds", "\n".join(texts(fig)))
        self.assertIn("test accuracy 97.1 %", "\n".join(texts(fig)))

    def test_every_chart_has_a_json_name(self):
        self.assertIs(charts.chart_for("gvmcs-cpu.json"), charts.draw_gvmcs)
        self.assertIs(charts.chart_for("vgpu.json"), charts.draw_vgpu)
        self.assertIs(charts.chart_for("gpu-shares.json"), charts.draw_gpu_shares)
        self.assertIs(charts.chart_for("mlaas.json"), charts.draw_mlaas)
        self.assertIsNone(charts.chart_for("gpu.json"))
        self.assertIsNone(charts.chart_for("gpu-check-nvidia-h200.json"))


if __name__ == "__main__":
    unittest.main()
