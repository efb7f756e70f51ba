from memcontrol.models.architectures import build_unet


def test_sd15_unet_builds_on_meta_device_with_the_published_size():
    unet = build_unet("sd15")
    assert next(unet.parameters()).device.type == "meta"
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
