"""JSON <-> typed models: the codec (`codec`) and its compiled fast path (`compiled`)."""

from .codec import Codec, RawItem
from .compiled import camel_case
from .pages import MAX_ITEM_ERRORS

__all__ = ["MAX_ITEM_ERRORS", "Codec", "RawItem", "camel_case"]
