"""Flash-TTS (`flashtts serve`): /clone_voice, /speak, /multi_speak, roles, /server_info."""

from voxgate.dialects.flash.routes import Flash, FlashConfig

__all__ = ["Flash", "FlashConfig"]
