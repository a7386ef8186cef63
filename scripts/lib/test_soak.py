"""scripts/lib/soak.py's verdicts and Jain's index, on made-up consoles (no VM runs here)."""
import unittest

from soak import hotplug_verdict, jain, train_verdict

REFERENCE_TEXT = """train: backend cpu (CPU reference), native; MLP 64-128-10
train: epoch 1 loss 1.1315 train-acc 90.95% test-acc 89.17% time 49 ms
train: epoch 2 loss 0.2613 train-acc 95.55% test-acc 95.28% time 52 ms
train: final test accuracy 95.28%
train: PASS
"""


def reference():
    from benchlib import parse_train
    return parse_train(REFERENCE_TEXT)


class Jain(unittest.TestCase):
    def test_equal_shares_are_one_and_one_hog_is_one_over_n(self):
        self.assertAlmostEqual(jain([3.0, 3.0, 3.0, 3.0]), 1.0)
        self.assertAlmostEqual(jain([1.0, 0.0, 0.0, 0.0]), 0.25)
        self.assertIsNone(jain([]))
        self.assertIsNone(jain([0.0, 0.0]))


class Verdicts(unittest.TestCase):
    def test_a_training_vm_must_equal_the_reference_epoch_for_epoch(self):
        guest = REFERENCE_TEXT.replace("time 49 ms", "time 400 ms")   # times may differ
        self.assertTrue(train_verdict(guest, 0, reference(), 2)[0])
        ok, why = train_verdict(guest.replace("loss 0.2613", "loss 0.2614"), 0, reference(), 2)
        self.assertFalse(ok)
        self.assertIn("#2", why)
        self.assertFalse(train_verdict(guest, 1, reference(), 2)[0])
        self.assertFalse(train_verdict(guest.replace("train: PASS", "train: FAIL"), 0, reference(), 2)[0])
        ok, why = train_verdict(guest.replace("train: epoch 2", "train: epoxh 2"), 0, reference(), 2)
        self.assertFalse(ok, why)
        self.assertTrue(train_verdict(guest, 0, None, 2)[0], "without a reference, PASS and exit 0 are enough")

    def test_a_shorter_job_is_compared_with_the_reference_s_first_epochs(self):
        one = REFERENCE_TEXT.replace(
            "train: epoch 2 loss 0.2613 train-acc 95.55% test-acc 95.28% time 52 ms\n", "").replace("95.28%", "89.17%")
        self.assertTrue(train_verdict(one, 0, reference(), 1)[0])
        self.assertFalse(train_verdict(one.replace("final test accuracy 89.17%", "final test accuracy 95.28%"), 0,
                                       reference(), 1)[0])
        self.assertFalse(train_verdict(REFERENCE_TEXT, 0, reference(), 3)[0], "the reference is shorter than the job")

    def test_a_hotplug_vm_must_do_every_cycle_and_exit_0(self):
        self.assertTrue(hotplug_verdict("hotplug: PASS (4 cycles)\n", 0, 4, 4)[0])
        self.assertTrue(hotplug_verdict("hotplug: PSS (4 cycles)\n", 0, 4, 4)[0], "a dropped console byte")
        self.assertFalse(hotplug_verdict("hotplug: PASS (4 cycles)\n", 0, 3, 4)[0])
        self.assertFalse(hotplug_verdict("hotplug: FAIL\n", 1, 4, 4)[0])


if __name__ == "__main__":
    unittest.main()
