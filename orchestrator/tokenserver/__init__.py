"""The Agora token server (`orchestrator serve`): an aiohttp.web app, split into small modules."""
