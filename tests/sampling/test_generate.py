import torch

from memcontrol.models.pipeline import load_pipeline
from memcontrol.sampling import generate, save_images


def test_image_i_depends_on_seed_plus_i_not_on_batching(tiny_model_dir):
    pipe = load_pipeline(str(tiny_model_dir))
    prompts = ["a small dark cross center"] * 3
    settings = dict(num_inference_steps=3, guidance_scale=1.5, progress=False)
    together = generate(pipe, prompts, seed=5, batch_size=3, **settings)
    one_by_one = generate(pipe, prompts, seed=5, batch_size=1, **settings)
    assert together.shape == (3, 3, 16, 16)
    assert torch.allclose(together, one_by_one, atol=1e-5)
    assert not torch.allclose(together[0], together[1])
    assert torch.allclose(generate(pipe, prompts[1:2], seed=6, **settings)[0], together[1], atol=1e-5)


def test_save_images_writes_pngs_and_a_grid(tmp_path):
    grid = save_images(torch.rand(3, 3, 16, 16), tmp_path / "out", columns=2)
    assert grid.is_file() and sorted(p.name for p in grid.parent.glob("0*.png")) == ["0000.png", "0001.png", "0002.png"]
