"""hva_recalc (internal, Cloud Scheduler hourly): HVA rankings and stats maintenance. Thin entry point."""
import functions_framework

from common.bootstrap import container
from common.handlers.hva_recalc import handle


@functions_framework.http
def hva_recalc(request):
    return handle(request, container())
