"""The admin of datapipe: collected errors (:mod:`.errors`), run records (:mod:`.runs`) and
the lineage page of any object (:mod:`.lineage`; :class:`LineageMixin` links a model's
change page to it).

The admins are registered on the default admin site here. To change one, subclass it,
unregister the model and register the subclass::

    admin.site.unregister(PipelineError)
    admin.site.register(PipelineError, MyPipelineErrorAdmin)

The datapipe landing page (:mod:`.dashboard`) is the app index at ``/admin/datapipe/``.
The default site's index shows datapipe's counts (runs running, open error groups)
unless the project set its own ``index_template``, which can show them with
``{% load datapipe_admin %}{% datapipe_counts %}``.
"""

from django.contrib import admin

from ..models import Lineage, PipelineError, PipelineRun
from .errors import PipelineErrorAdmin
from .lineage import LineageAdmin, LineageMixin, lineage_url
from .runs import PipelineRunAdmin

__all__ = ["LineageAdmin", "LineageMixin", "PipelineErrorAdmin", "PipelineRunAdmin", "lineage_url"]

admin.site.register(PipelineError, PipelineErrorAdmin)
admin.site.register(PipelineRun, PipelineRunAdmin)
admin.site.register(Lineage, LineageAdmin)
if admin.site.index_template is None:
    admin.site.index_template = "datapipe/admin/index.html"
