"""bulk_queue: operators' bulk enqueue (internal). Thin entry point."""
import functions_framework

from common.bootstrap import container
from common.handlers.bulk_queue import handle


@functions_framework.http
def bulk_queue(request):
    return handle(request, container())
