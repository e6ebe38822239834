"""The domain. Plain async functions over a database session; nothing here knows about aiogram."""
