"""Before django-rest-knox, `rest_framework.authtoken` kept one token per user in clear, in
`authtoken_token`. Those tokens are no longer accepted; their table goes, so that no copy of
the database holds a usable secret, and with it the record of its migrations (as if the app
had never been installed)."""

from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder


def forget_clear_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" in connection.introspection.table_names():
        schema_editor.execute("DROP TABLE authtoken_token")
    MigrationRecorder(connection).migration_qs.filter(app="authtoken").delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_api_token")]

    operations = [migrations.RunPython(forget_clear_tokens, migrations.RunPython.noop)]
