# Previews are stored as JPEG (issue 12): new files get a .jpg name; those stored before
# keep their .png name and are served as PNG.

from django.db import migrations, models

import chestnet_site.storage


class Migration(migrations.Migration):
    dependencies = [
        ("diagnosis", "0011_worklist_live"),
    ]

    operations = [
        migrations.AlterField(
            model_name="image",
            name="preview",
            field=models.FileField(
                blank=True, upload_to=chestnet_site.storage.RandomName("previews", ".jpg")
            ),
        ),
    ]
