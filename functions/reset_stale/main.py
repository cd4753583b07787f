"""reset_stale: recovers stuck work on Cloud Scheduler's call (internal). Thin entry point."""
import functions_framework

from common.bootstrap import container
from common.handlers.reset_stale import handle


@functions_framework.http
def reset_stale(request):
    return handle(request, container())
