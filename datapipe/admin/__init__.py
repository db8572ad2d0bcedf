"""The admin of datapipe: collected errors (:mod:`.errors`) and run records (:mod:`.runs`).

Both admins are registered on the default admin site here. To change one, subclass it,
unregister the model and register the subclass::

    admin.site.unregister(PipelineError)
    admin.site.register(PipelineError, MyPipelineErrorAdmin)
"""

from django.contrib import admin

from ..models import PipelineError, PipelineRun
from .errors import PipelineErrorAdmin
from .runs import PipelineRunAdmin

__all__ = ["PipelineErrorAdmin", "PipelineRunAdmin"]

admin.site.register(PipelineError, PipelineErrorAdmin)
admin.site.register(PipelineRun, PipelineRunAdmin)
