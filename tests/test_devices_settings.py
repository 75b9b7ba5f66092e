"""devices/: which device, and how a run uses it (DeviceSettings, chosen from the user's DeviceOptions)."""

import pytest
import torch

from petalnet.devices.options import DeviceOptions
from petalnet.devices.select import describe, pick_device
from petalnet.devices.settings import DeviceSettings, InferenceSettings, autocast, device_settings, inference_settings
from petalnet.errors import UserError
from petalnet.utils.cores import cpu_count
from petalnet.utils.fields import SettingError, to_dict

CPU = torch.device("cpu")


def test_auto_settings_for_a_cpu_say_why():
    cache, pil = device_settings(CPU, "cache"), device_settings(CPU, "pil")
    assert isinstance(cache, DeviceSettings) and cache.channels_last and not cache.pin_memory
    assert cache.workers == min(8, cpu_count()) and pil.workers == 0  # pil on a CPU: the model is the limit
    assert cache.eval_batch_size == 64 and not cache.compile and cache.amp in ("off", "bf16")
    assert set(cache.why) >= {"amp", "channels_last", "fused_optimizer", "workers", "eval_batch_size", "compile"}
    assert to_dict(cache)["why"] == cache.why and "cache_dir" in to_dict(cache)


def test_what_the_user_asks_is_what_the_run_does():
    settings = device_settings(CPU, "cache", DeviceOptions(amp="off", channels_last="off", fused_optimizer="off",
                                                            workers=3, eval_batch_size=7, cache_dir="/tmp/c"))
    assert (settings.amp, settings.channels_last, settings.fused_optimizer) == ("off", False, False)
    assert (settings.workers, settings.eval_batch_size, settings.cache_dir) == (3, 7, "/tmp/c")
    assert settings.why["workers"] == "--workers" and settings.why["amp"] == "--amp"


@pytest.mark.parametrize("options, setting, says", [
    (DeviceOptions(amp="fp16"), "amp", "{} fp16 needs a CUDA GPU (this run is on cpu)"),
    (DeviceOptions(amp="fp8"), "amp", "unknown {} 'fp8'"),
    (DeviceOptions(workers=-1), "workers", "{} must be 0 or more, got -1"),
    (DeviceOptions(eval_batch_size=0), "eval_batch_size", "{} must be at least 1"),
    (DeviceOptions(channels_last="yes"), "channels_last", "unknown {} 'yes'"),
])
def test_bad_options_name_the_option(options, setting, says):
    with pytest.raises(SettingError) as err:
        device_settings(CPU, "cache", options)
    assert err.value.setting == setting and says.format(setting) in str(err.value)
    assert says.format("--" + setting.replace("_", "-")) in err.value.as_flag()


def test_inference_settings_match_trainings_auto_choices_and_leave_the_process_alone(monkeypatch):
    """predict, evaluate and serve pick the memory format and precision as train's auto does, without
    retuning glibc's allocator (mallopt) or measuring free memory: both are made to fail here."""
    import petalnet.devices.settings as settings_module

    trained = device_settings(CPU, "cache")

    def touched(*args):
        raise AssertionError("inference touched training's process-wide settings")

    for name in ("keep_large_allocations_in_heap", "_mallopt_heap_reuse", "available_memory"):
        monkeypatch.setattr(settings_module, name, touched)
    settings = inference_settings(CPU)
    assert settings == InferenceSettings(amp=trained.amp, channels_last=trained.channels_last)
    assert not hasattr(settings, "workers") and not hasattr(settings, "cache_memory")
    with pytest.raises(AssertionError, match="touched"):
        device_settings(CPU, "cache")  # the check above can fail: training's settings do touch them
    with autocast(CPU, InferenceSettings(amp="bf16"), training=False):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


def test_evaluation_on_a_cpu_is_fp32_even_with_bf16_training():
    bf16 = DeviceSettings(amp="bf16")
    with autocast(CPU, bf16, training=False):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    with autocast(CPU, bf16, training=True):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16


def test_pick_device():
    assert pick_device("cpu") == CPU and pick_device("CPU") == CPU and describe(CPU).startswith("cpu (")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SettingError, match="device cuda: no CUDA GPU is available"):
            pick_device("cuda")
