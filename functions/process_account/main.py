"""process_account: the lineage queue's worker (internal). Thin entry point."""
import functions_framework

from common.bootstrap import container
from common.handlers.process_account import handle


@functions_framework.http
def process_account(request):
    return handle(request, container())
