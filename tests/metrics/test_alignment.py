import pytest
import torch

from memcontrol.errors import UserError
from memcontrol.metrics import DomainCNN, DomainFeatures, class_alignment, class_probability_score, load_clip
from memcontrol.metrics.domain import DomainEncoderConfig


def test_class_probability_score_known_answer():
    probabilities = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    assert class_probability_score(probabilities, torch.tensor([0, 0, 1])) == pytest.approx((0.9 + 0.3 + 0.5) / 3)


def _classifier():
    torch.manual_seed(0)
    return DomainFeatures(DomainCNN(DomainEncoderConfig(("circle", "square"), input_size=16, width=8)))


def test_class_alignment_scores_mapped_captions_and_leaves_out_the_rest():
    classifier, images = _classifier(), torch.rand(3, 3, 16, 16)
    captions = ["a circle", "no class here", "a square"]
    class_of = lambda caption: caption.split()[-1] if caption.startswith("a ") else None  # noqa: E731
    probabilities = classifier.class_probabilities(images)
    expected = (probabilities[0, 0] + probabilities[2, 1]) / 2
    assert class_alignment(classifier, images, captions, class_of) == pytest.approx(float(expected))
    assert class_alignment(classifier, images, captions, lambda caption: None) is None
    with pytest.raises(UserError, match="class 'triangle' is not one of the domain encoder's classes"):
        class_alignment(classifier, images, captions, lambda caption: "triangle")


def test_clip_without_local_weights_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="never downloads"):
        load_clip(str(tmp_path / "no-clip"))
