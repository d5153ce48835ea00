"""JSON <-> typed models: the codec (`codec`) and its compiled fast path (`compiled`)."""

from .codec import MAX_ITEM_ERRORS, Codec, RawItem
from .compiled import camel_case

__all__ = ["MAX_ITEM_ERRORS", "Codec", "RawItem", "camel_case"]
