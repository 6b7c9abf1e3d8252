"""l2emg: LLM-centric lifelong empathic motion generation (ES-MoE reference implementation)."""

__version__ = "0.1.0"
