"""Training building blocks: schedule, target, loss, logit statistics, resumable state."""

from __future__ import annotations

import json

import pytest
import torch

from ros2_fed.fed import FEDConfig, FlowEneDet
from training.data import SeededStreamSampler
from training.objective import fed_loss, wrong_pixel_target
from training.schedule import lr_at, parse_size
from training.state import load_training_state, save_training_state
from training.stats import LogitStatistics


def test_paper_schedule() -> None:
    kw = dict(base_lr=1e-3, warmup_iters=4000, warmup_start=1e-6, step=15000, gamma=0.1)
    assert lr_at(0, **kw) == pytest.approx(1e-6)
    assert lr_at(2000, **kw) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    assert lr_at(4000, **kw) == pytest.approx(1e-3)
    assert lr_at(14999, **kw) == pytest.approx(1e-3)
    assert lr_at(15000, **kw) == pytest.approx(1e-4)
    assert lr_at(30000, **kw) == pytest.approx(1e-5)
    assert lr_at(49999, **kw) == pytest.approx(1e-6)
    assert parse_size("512x1024") == (512, 1024)
    with pytest.raises(ValueError):
        parse_size("512")


def test_wrong_pixel_target_and_void_option() -> None:
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = 5  # predicts 0
    logits[0, 1, 0, 1] = 5  # predicts 1
    logits[0, 2, 1, :] = 5  # predicts 2, 2
    labels = torch.tensor([[[0, 2], [255, 2]]], dtype=torch.uint8)
    torch.testing.assert_close(
        wrong_pixel_target(logits, labels), torch.tensor([[[0, 1], [1, 0]]])
    )
    torch.testing.assert_close(
        wrong_pixel_target(logits, labels, void_as_wrong=False), torch.tensor([[[0, 1], [255, 0]]])
    )
    padded = labels.clone()
    padded[0, 0, 1] = 254  # crop padding is ignored even when void counts as wrong
    torch.testing.assert_close(
        wrong_pixel_target(logits, padded), torch.tensor([[[0, 255], [1, 0]]])
    )
    # logits at 1/4 resolution are resized to the labels before the argmax
    big_labels = torch.zeros(1, 8, 8, dtype=torch.uint8)
    assert wrong_pixel_target(logits, big_labels).shape == (1, 8, 8)


def test_fed_loss_upsamples_and_ignores_void() -> None:
    component = torch.randn(2, 2, 4, 4, requires_grad=True)
    target = torch.randint(0, 2, (2, 16, 16))
    target[:, :4] = 255
    loss = fed_loss(component, target)
    up = torch.nn.functional.interpolate(
        component, size=(16, 16), mode="bilinear", align_corners=False
    )
    expected = torch.nn.functional.cross_entropy(up, target, ignore_index=255)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert component.grad is not None


@pytest.mark.parametrize("definition", ["correct", "predicted"])
def test_logit_statistics_equal_a_direct_computation(definition: str) -> None:
    gen = torch.Generator().manual_seed(3)
    stats = LogitStatistics(4, definition)
    all_logits, all_labels = [], []
    for _ in range(3):
        logits = torch.randn(2, 4, 5, 6, generator=gen) * 3 + 1
        logits[:, 3] -= 20  # class 3 is never predicted
        labels = torch.randint(0, 4, (2, 5, 6), generator=gen)
        labels[labels == 3] = 255  # ... and never labelled
        stats.update(logits, labels)
        all_logits.append(logits)
        all_labels.append(labels)
    logits = torch.cat(all_logits).permute(0, 2, 3, 1).reshape(-1, 4).double().numpy()
    labels = torch.cat(all_labels).reshape(-1).numpy()
    predicted, max_logit = logits.argmax(axis=1), logits.max(axis=1)
    labelled = labels != 255
    mean, std = stats.result()
    for c in range(3):
        if definition == "correct":
            values = max_logit[labelled & (labels == c) & (predicted == c)]
        else:
            values = max_logit[labelled & (predicted == c)]
        assert mean[c].item() == pytest.approx(values.mean(), abs=1e-5)
        assert std[c].item() == pytest.approx(values.std(), abs=1e-5)
    assert (mean[3].item(), std[3].item()) == (0.0, 1.0)
    assert stats.to_json()["count"][3] == 0
    assert stats.to_json()["definition"] == definition


def test_a_wrong_pixel_never_enters_the_authors_statistics() -> None:
    """Hand-made: three pixels of class 0, one of them misclassified as class 1 with a huge
    logit. The authors' statistics (argmax == ground truth == c) leave it out; SML's
    predicted-class statistics file it under class 1; void never counts."""
    logits = torch.tensor(
        [[[[5.0, 7.0, 1.0, 3.0]], [[0.0, 0.0, 50.0, 9.0]]]]
    )  # (1, 2 classes, 1, 4 pixels)
    labels = torch.tensor([[[0, 0, 0, 255]]])
    correct = LogitStatistics(2, "correct")
    correct.update(logits, labels)
    mean, std = correct.result()
    assert mean[0].item() == pytest.approx(6.0) and std[0].item() == pytest.approx(1.0)
    assert correct.count.tolist() == [2.0, 0.0]
    predicted = LogitStatistics(2, "predicted")
    predicted.update(logits, labels)
    assert predicted.count.tolist() == [2.0, 1.0]
    assert predicted.result()[0][1].item() == pytest.approx(50.0)


def test_statistics_of_the_retired_definition_are_refused(tmp_path) -> None:
    from ros2_fed.logit_statistics import (
        StatisticsDefinitionError,
        read_statistics_file,
        statistics_from_metadata,
    )

    old = {
        "mean": [1.0],
        "std": [1.0],
        "definition": "logit c over pixels whose ground truth is c",
    }
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(old))
    with pytest.raises(StatisticsDefinitionError, match="recompute them with fed_stats"):
        read_statistics_file(path)
    path.write_text(json.dumps({**old, "definition": "correct"}))
    assert read_statistics_file(path)["definition"] == "correct"
    with pytest.warns(UserWarning, match="unsupported definition"):
        assert statistics_from_metadata({"logit_statistics": old}, "FED") == old


def test_sampler_stream_is_resumable() -> None:
    full = SeededStreamSampler(7, seed=5)
    it = iter(full)
    stream = [next(it) for _ in range(20)]
    resumed = iter(SeededStreamSampler(7, seed=5, skip=9))
    assert [next(resumed) for _ in range(11)] == stream[9:]
    assert sorted(i for i, _ in stream[:7]) == list(range(7))  # one epoch = a permutation
    assert stream != [next(iter(SeededStreamSampler(7, seed=6))) for _ in range(20)]


def test_training_state_round_trip_continues_identically(tmp_path) -> None:
    def make():
        torch.manual_seed(0)
        model = FlowEneDet(FEDConfig(blocks=2, kernel=3))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return model, opt

    logits = torch.randn(2, 19, 6, 6)
    target = torch.randint(0, 2, (2, 6, 6))

    def step(model, opt):
        loss = fed_loss(model(logits + 0.01 * torch.randn_like(logits)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    a, opt_a = make()
    a.initialize(logits)
    for _ in range(3):
        step(a, opt_a)
    save_training_state(tmp_path / "state", a, opt_a, 3, {"note": "t"})
    for _ in range(3):
        step(a, opt_a)

    b, opt_b = make()
    meta = load_training_state(tmp_path / "state", b, opt_b)
    assert meta["iteration"] == 3
    for _ in range(3):
        step(b, opt_b)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, msg=name)
