# Keyed records (datapipe.sources) are tracked with no content type: one tracker each.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('datapipe', '0007_operator_views'),
    ]

    operations = [
        migrations.AlterField(
            model_name='pipelinetrack',
            name='item_content_type',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='contenttypes.contenttype'),
        ),
        migrations.AddConstraint(
            model_name='pipelinetrack',
            constraint=models.UniqueConstraint(condition=models.Q(('item_content_type__isnull', True)), fields=('pipeline_name', 'item_id'), name='datapipe_track_unique_record'),
        ),
    ]
