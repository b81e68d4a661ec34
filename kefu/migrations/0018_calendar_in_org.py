"""Work hours point at org.BusinessCalendar (same ids: tickets 0003 copied the rows)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("kefu", "0017_prechat_transcript"),
        ("org", "0004_business_calendars"),
        ("tickets", "0003_calendars_to_org"),
    ]

    operations = [
        migrations.AlterField(
            model_name="workgroup",
            name="calendar",
            field=models.ForeignKey(
                blank=True,
                help_text="Outside these hours (in their time zone, holidays included) the widget offers to leave a message. Empty: always open.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="org.businesscalendar",
                verbose_name="work hours",
            ),
        ),
    ]
