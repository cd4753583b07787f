"""stats (public, read-only): pipeline stats, lineage tree, leaderboard, query builder, health. Thin entry point."""
import functions_framework

from common.bootstrap import container
from common.handlers.stats import handle


@functions_framework.http
def stats(request):
    return handle(request, container())
