"""hubble_sync: the network-wide Hubble sync's plan and range tasks (internal). Thin entry point."""
import functions_framework

from common.bootstrap import container
from common.handlers.hubble_sync import handle


@functions_framework.http
def hubble_sync(request):
    return handle(request, container())
