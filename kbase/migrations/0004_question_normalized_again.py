"""Unanswered questions are now compared with punctuation, width and spacing ignored
(kefu.robot.normalized_question): recompute the stored form and merge open entries that become
the same question (counts added, the earliest entry kept)."""

import unicodedata

from django.db import migrations


def _cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\uac00" <= ch <= "\ud7af"


def _normalized(question: str) -> str:
    # a frozen copy of kefu.robot.normalized_question as of this migration
    text = unicodedata.normalize("NFKC", question).casefold()
    kept = "".join(" " if unicodedata.category(ch)[0] in "PSZ" else ch for ch in text)
    out = ""
    for word in kept.split():
        if out and not (_cjk(out[-1]) and _cjk(word[0])):
            out += " "
        out += word
    return out[:500]


def forwards(apps, schema_editor):
    RobotQuestion = apps.get_model("kbase", "RobotQuestion")
    keep: dict[str, object] = {}
    for q in RobotQuestion.objects.order_by("first_asked_at", "pk"):
        q.normalized = _normalized(q.question)
        first = keep.get(q.normalized) if q.status == "open" else None
        if first is None:
            q.save(update_fields=["normalized"])
            if q.status == "open":
                keep[q.normalized] = q
            continue
        first.count += q.count
        if q.last_asked_at > first.last_asked_at:
            first.last_asked_at = q.last_asked_at
            first.conversation_id = q.conversation_id
        if q.reason == "not_helpful":
            first.reason = "not_helpful"
        first.save(update_fields=["count", "last_asked_at", "conversation_id", "reason"])
        q.delete()


class Migration(migrations.Migration):
    dependencies = [("kbase", "0003_robot")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
