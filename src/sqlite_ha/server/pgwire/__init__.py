"""PostgreSQL wire protocol front end: the sans-IO codec, authentication and the asyncio adapter."""
