"""search: the public entry point (validate, answer from the store or queue the account). Thin entry point."""
import functions_framework

from common.bootstrap import container
from common.handlers.search import handle


@functions_framework.http
def search(request):
    return handle(request, container())
