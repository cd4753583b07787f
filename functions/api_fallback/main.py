"""api_fallback: the api-fallback queue's worker (internal). Thin entry point."""
import functions_framework

from common.bootstrap import container
from common.handlers.api_fallback import handle


@functions_framework.http
def api_fallback(request):
    return handle(request, container())
