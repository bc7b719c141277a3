"""The services, one module each, every one with `async def run(settings, *, task_status)`."""
