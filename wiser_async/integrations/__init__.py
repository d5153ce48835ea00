"""Optional integrations of wiser-async with other libraries."""
