"""Where a run goes: pick the device, device settings (amp, channels_last, ...), torchrun's processes."""
