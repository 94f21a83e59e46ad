"""The demo's own words: which run it is (smoke test or fine-tuning) and whether its held-out answer was right."""

from pathlib import Path

from lamina.demo import is_cat, plan_line, verdict_line


def test_the_first_line_names_both_runs():
    weights = Path("/cache/hub/checkpoints/resnet34-b627a593.pth")
    offline = plan_line(False, weights)
    assert offline.startswith("Offline smoke test:") and "from scratch" in offline and "near chance" in offline
    assert "resnet34-b627a593.pth in /cache/hub/checkpoints" in offline and "fine-tunes" in offline
    online = plan_line(True, weights)
    assert online.startswith("ImageNet resnet34 weights found") and "smoke test" in online
    assert "\n" not in offline + online  # one line each


def test_the_verdict_says_right_or_wrong():
    assert is_cat("Abyssinian_101.jpg") and not is_cat("pug_3.jpg")
    assert verdict_line("Abyssinian_101.jpg", True, "True", 0.9).endswith("0.900000 (right)")
    wrong = verdict_line("Abyssinian_101.jpg", True, "False", 0.2)
    assert wrong == ("held-out image Abyssinian_101.jpg (a cat): is this a cat? False. "
                     "Probability it's a cat: 0.200000 (wrong)")
    assert verdict_line("pug_3.jpg", False, "False", 0.1).endswith("(right)")
