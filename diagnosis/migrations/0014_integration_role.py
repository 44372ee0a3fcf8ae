# The integration role: service accounts that store studies over STOW-RS and read nothing.

from django.db import migrations


def create_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name="integration")


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0013_study_intake_and_pacs_failure")]
    operations = [migrations.RunPython(create_group, migrations.RunPython.noop)]
