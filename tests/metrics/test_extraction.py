import numpy as np
import pytest
import torch
from PIL import Image

from memcontrol.data.imagefolder import load_imagefolder, load_images
from memcontrol.metrics import (
    extraction_attack,
    find_groups,
    maximum_clique,
    run_extraction_attack,
    save_extraction_grid,
    tile_distances,
)
from memcontrol.metrics.extraction import AttackRun, nearest_generations, save_closest
from memcontrol.models.pipeline import load_pipeline
from memcontrol.sampling import generate


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_tile_distance_is_the_worst_tiles_rms_difference():
    a = torch.zeros(1, 3, 16, 16)
    one_tile = a.clone()
    one_tile[..., :4, :4] = 0.5  # exactly one of the 4 x 4 tiles
    assert tile_distances(a, a).item() == 0
    assert tile_distances(a, one_tile).item() == pytest.approx(0.5)
    assert tile_distances(a, a + 0.1).item() == pytest.approx(0.1)
    assert tile_distances(a, torch.cat([a, one_tile])).shape == (1, 2)


def _near_copies(image, n, seed):
    return (image + 0.01 * torch.randn(n, *image.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


def test_planted_near_duplicates_are_extracted():
    originals = _rand(2, 3, 16, 16)
    generated = torch.stack(
        [
            torch.cat([_rand(2, 3, 16, 16, seed=1), _near_copies(originals[0], 4, seed=2)]),
            _rand(6, 3, 16, 16, seed=3),
        ]
    )
    found = extraction_attack(generated, originals, ["memorised", "novel"], threshold=0.15, min_group=3)
    assert len(found) == 1
    (e,) = found
    assert (e.prompt, e.training_index, e.group_size) == ("memorised", 0, 4)
    assert 2 <= e.generated_index < 6 and e.distance < 0.05


def test_distinct_images_give_nothing():
    assert extraction_attack(_rand(3, 8, 3, 16, 16), _rand(3, 3, 16, 16, seed=1), ["a", "b", "c"]) == []


def test_a_consistent_image_that_is_not_the_training_image_is_not_extracted():
    other, original = _rand(3, 16, 16), _rand(1, 3, 16, 16, seed=1)
    generated = _near_copies(other, 5, seed=2)[None]
    assert extraction_attack(generated, original, ["p"], min_group=3) == []


def _chain(n):
    """Each node adjacent to the next only: a, b, c with a far from c."""
    adjacency = np.eye(n, dtype=bool)
    for i in range(n - 1):
        adjacency[i, i + 1] = adjacency[i + 1, i] = True
    return adjacency


def test_cliques_and_connected_components_differ_on_a_chain():
    assert find_groups(_chain(5), 3, "clique") == []
    assert find_groups(_chain(5), 3, "connected-components") == [[0, 1, 2, 3, 4]]


def test_maximum_clique_known_answer():
    adjacency = np.zeros((6, 6), dtype=bool)
    for i, j in [(1, 2), (1, 3), (1, 5), (2, 3), (2, 5), (3, 5), (0, 1), (4, 5), (0, 4)]:
        adjacency[i, j] = adjacency[j, i] = True
    assert maximum_clique(adjacency) == [1, 2, 3, 5]
    assert maximum_clique(np.zeros((0, 0), dtype=bool)) == []


def test_cliques_are_taken_disjoint_largest_first():
    adjacency = np.zeros((7, 7), dtype=bool)
    for group in ([0, 1, 2], [3, 4, 5, 6]):
        adjacency[np.ix_(group, group)] = True
    adjacency[2, 3] = adjacency[3, 2] = True
    assert find_groups(adjacency, 3, "clique") == [[3, 4, 5, 6], [0, 1, 2]]
    assert find_groups(adjacency, 3, "connected-components") == [[0, 1, 2, 3, 4, 5, 6]]


def test_each_prompts_nearest_generation_is_found_extracted_or_not():
    originals = _rand(2, 3, 16, 16)
    generated = torch.stack(
        [
            torch.cat(
                [_rand(2, 3, 16, 16, seed=1), _near_copies(originals[0], 1, seed=2)]
            ),  # one copy: no clique, no extraction
            _rand(3, 3, 16, 16, seed=3),
        ]
    )
    distances, nearest = nearest_generations(generated, originals)
    assert (
        nearest[0] == 2 and distances[0] < 0.05 and not extraction_attack(generated, originals, ["a", "b"], min_group=2)
    )
    assert distances[1] == tile_distances(generated[1], originals[1:2]).min()


def test_extraction_grid_is_a_png(tmp_path):
    originals = _rand(1, 3, 16, 16)
    generated = _near_copies(originals[0], 4, seed=1)
    found = extraction_attack(generated[None], originals, ["a prompt"], min_group=3)
    run = AttackRun(found, [(originals[0], generated[e.generated_index]) for e in found], prompts=1)
    for name, r in (("found.png", run), ("none.png", AttackRun([], [], prompts=3))):
        with Image.open(save_extraction_grid(r, tmp_path / name)) as image:
            assert image.format == "PNG" and image.width > 100


def test_attack_run_indices_name_the_training_file_and_reproduce_the_generation(
    tiny_model_dir, tiny_data_dir, tmp_path
):
    """With a threshold no pair can miss, every prompt is 'extracted': check the bookkeeping across chunks."""
    pipe = load_pipeline(str(tiny_model_dir))
    examples = load_imagefolder(tiny_data_dir)[:3]
    sampling = dict(num_inference_steps=2, guidance_scale=1.5, resolution=16)
    run = run_extraction_attack(
        pipe,
        examples + examples[:1],
        16,
        samples_per_prompt=2,
        min_group=2,
        threshold=10.0,
        seed=7,
        batch_size=2,
        num_inference_steps=2,
        guidance_scale=1.5,
        progress=False,
    )
    assert run.prompts == 3 and [e.training_index for e in run.extractions] == [0, 1, 2]
    for e, (training, generated) in zip(run.extractions, run.pairs):
        assert (
            e.training_image == str(examples[e.training_index].image_path)
            and e.prompt == examples[e.training_index].text
        )
        assert 2 * e.training_index <= e.generated_index < 2 * e.training_index + 2
        again = generate(pipe, [e.prompt], seed=7 + e.generated_index, progress=False, **sampling)[0]
        assert torch.allclose(again, generated, atol=1e-5)
        assert torch.allclose(training, (load_images([examples[e.training_index]], 16, progress=False)[0] + 1) / 2)
    # Each prompt's nearest generation is kept whether extracted or not, and written as a PNG.
    assert [c.training_image for c in run.closest] == [str(e.image_path) for e in examples]
    assert all(2 * p <= c.generated_index < 2 * p + 2 for p, c in enumerate(run.closest))
    records = save_closest(run, tmp_path / "closest")
    assert [r["file"] for r in records] == ["closest/0000.png", "closest/0001.png", "closest/0002.png"]
    with Image.open(tmp_path / records[0]["file"]) as image:
        assert image.size == (16, 16)
