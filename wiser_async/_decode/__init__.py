"""JSON <-> typed models: the codec (`codec`) and its compiled fast path (`compiled`)."""

from .codec import MAX_ITEM_ERRORS, Codec
from .compiled import camel_case

__all__ = ["MAX_ITEM_ERRORS", "Codec", "camel_case"]
