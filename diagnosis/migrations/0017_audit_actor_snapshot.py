# Events written before issue 21 get their actor's name and roles as they are now, the
# closest the record can come to "at the time"; later events are written with them.

from django.db import migrations

ROLES = ("clinician", "radiologist", "admin", "integration")


def fill_snapshot(apps, schema_editor):
    # The historical model's plain manager: this one-off fill is the only update the
    # append-only trail ever receives.
    AuditEvent = apps.get_model("diagnosis", "AuditEvent")
    User = apps.get_model("auth", "User")
    actor_ids = AuditEvent.objects.exclude(actor=None).values_list("actor", flat=True).distinct()
    for user in User.objects.filter(pk__in=list(actor_ids)).prefetch_related("groups"):
        names = {group.name for group in user.groups.all()} & set(ROLES)
        if user.is_superuser:
            names.add("admin")
        AuditEvent.objects.filter(actor=user, actor_username="").update(
            actor_username=user.username, actor_role=",".join(sorted(names))
        )


class Migration(migrations.Migration):
    dependencies = [("diagnosis", "0016_people_leave")]
    operations = [migrations.RunPython(fill_snapshot, migrations.RunPython.noop)]
