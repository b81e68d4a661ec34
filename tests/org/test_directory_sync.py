"""Directory sync (ORG-5, org.directory): CSV/XLSX import with a dry run and a report by line
(back office and ``manage.py import_directory``), and the HR systems' write API with
idempotent upserts by external id. People removed upstream are disabled, keeping history."""

from __future__ import annotations

import io
import json

from django.core.management import call_command
from django.test import Client
from django_tenants.utils import schema_context
from openpyxl import Workbook

from org import apikeys, directory
from org.models import ApiKey, Department, DepartmentMember, User
from tests.conftest import agent_client, make_agent, unique

HOST = "acme.localhost"


def _csv(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _mine(ids: list[str], prefix: str) -> list[str]:
    """The external ids of this test (a full import also disables other tests' people)."""
    return sorted(i for i in ids if i.startswith(prefix))


def _import(data: bytes, *, dry_run: bool, name: str = "people.csv") -> directory.Report:
    with schema_context("acme"):
        rows = directory.read_table(name=name, data=data)
        return directory.directory_import(rows=rows, dry_run=dry_run)


def test_a_dry_run_reports_by_line_and_changes_nothing_then_the_import_does_it():
    # given an HR export with two good people and three bad rows
    p = unique("hr")
    data = _csv(
        "external_id,username,email,name,title,role,departments",
        f"{p}-1,{p}.li,li.{p}@example.com,Li Lei,Engineer,agent,{p}Eng/Backend;{p}Ops",
        f"{p}-2,,han.{p}@example.com,Han Meimei,,staff,{p}Eng",
        f"{p}-3,,not-an-address,Bad Mail,,,",
        f"{p}-4,,,Bad Role,,boss,",
        f"{p}-1,,,Twice,,,",
    )

    # when it is dry-run
    report = _import(data, dry_run=True)

    # then the report says what would happen, with the bad rows' lines, and nothing changed
    assert report.dry_run
    assert _mine(report.created, p) == [f"{p}-1", f"{p}-2"]
    assert [line for line, _message in report.errors] == [4, 5, 6]
    assert "email" in report.errors[0][1]
    assert "role" in report.errors[1][1]
    assert "line 2" in report.errors[2][1]
    with schema_context("acme"):
        assert not User.objects.filter(external_id__startswith=p).exists()
        assert not Department.objects.filter(name__startswith=p).exists()

    # when it is imported for real
    report = _import(data, dry_run=False)

    # then the people exist with their departments (made from the paths, first one primary)
    assert _mine(report.created, p) == [f"{p}-1", f"{p}-2"]
    with schema_context("acme"):
        li = User.objects.get(external_id=f"{p}-1")
        assert (li.username, li.display_name, li.title, li.role) == (
            f"{p}.li",
            "Li Lei",
            "Engineer",
            "agent",
        )
        assert not li.has_usable_password()
        memberships = {
            m.department.name: m.is_primary for m in DepartmentMember.objects.filter(user=li)
        }
        assert memberships == {"Backend": True, f"{p}Ops": False}
        backend = Department.objects.get(name="Backend", memberships__user=li)
        assert Department.objects.get_parent(backend).name == f"{p}Eng"
        han = User.objects.get(external_id=f"{p}-2")
        assert han.username == f"han.{p}@example.com"


def test_a_later_import_updates_keeps_and_disables_people_removed_upstream():
    # given two synced people, one of whom took part in a department
    p = unique("hr")
    _import(
        _csv(
            "external_id,name,title,departments",
            f"{p}-1,Ann,Agent,{p}Sales",
            f"{p}-2,Bo,Agent,{p}Sales",
        ),
        dry_run=False,
    )

    # when the next export changes Ann's title and no longer has Bo
    report = _import(
        _csv("external_id,name,title,departments", f"{p}-1,Ann,Lead,{p}Sales"), dry_run=False
    )

    # then Ann is updated and Bo disabled, keeping his account and memberships (history)
    assert _mine(report.updated, p) == [f"{p}-1"]
    assert _mine(report.disabled, p) == [f"{p}-2"]
    with schema_context("acme"):
        bo = User.objects.get(external_id=f"{p}-2")
        assert not bo.is_active
        assert bo.deleted_at is None
        assert DepartmentMember.objects.filter(user=bo).exists()
        assert User.objects.get(external_id=f"{p}-1").title == "Lead"

    # when the same export comes again, nothing changes
    again = _import(
        _csv("external_id,name,title,departments", f"{p}-1,Ann,Lead,{p}Sales"), dry_run=False
    )
    assert _mine(again.unchanged, p) == [f"{p}-1"]
    assert _mine(again.disabled, p) == []


def test_the_back_office_imports_an_xlsx_file_with_a_report():
    # given an XLSX file with Chinese headers
    p = unique("hr")
    book = Workbook()
    sheet = book.active
    sheet.append(["工号", "姓名", "邮箱", "部门"])
    sheet.append([f"{p}-1", "王芳", f"wang.{p}@example.com", f"{p}客服部"])
    sheet.append([f"{p}-2", "赵强", "", f"{p}客服部"])
    buffer = io.BytesIO()
    book.save(buffer)
    upload = io.BytesIO(buffer.getvalue())
    upload.name = "people.xlsx"
    with schema_context("acme"):
        admin = User.objects.get(username="bob")
    client = agent_client(admin)

    # when the admin opens Users → Import directory and imports it without a dry run
    page = client.get("/admin/org/user/")
    assert 'id="directory-import-link"' in page.content.decode()
    response = client.post(
        "/admin/org/user/import/",
        {"file": upload, "dry_run": "", "disable_missing": ""},
    )

    # then the report shows two people created, and they exist
    assert response.status_code == 200
    text = response.content.decode()
    assert 'id="import-report"' in text
    assert "2 created" in text
    with schema_context("acme"):
        assert User.objects.get(external_id=f"{p}-1").display_name == "王芳"


def test_the_back_office_refuses_a_file_it_cannot_read():
    with schema_context("acme"):
        admin = User.objects.get(username="bob")
    upload = io.BytesIO(b"external_id\n1\n")
    upload.name = "people.txt"

    response = agent_client(admin).post(
        "/admin/org/user/import/", {"file": upload, "dry_run": "on"}
    )

    assert response.status_code == 400
    assert "Upload a .csv or .xlsx file." in response.content.decode()


def test_the_import_command_dry_runs_and_reports(tmp_path):
    p = unique("hr")
    path = tmp_path / "people.csv"
    path.write_bytes(_csv("external_id;name", f"{p}-1;Kai", f"{p} bad;Space"))
    out = io.StringIO()

    call_command(
        "import_directory", str(path), "--schema", "acme", "--dry-run", "--keep-missing", stdout=out
    )

    text = out.getvalue()
    assert "Dry run: would have created 1" in text
    assert "line 3: external_id:" in text
    with schema_context("acme"):
        assert not User.objects.filter(external_id=f"{p}-1").exists()


# --- the HR systems' API


def _system_key(scopes: list[str]) -> str:
    with schema_context("acme"):
        _key, token = apikeys.api_key_create(
            kind=ApiKey.Kind.SYSTEM,
            user=User.objects.get(username="bob"),
            name=unique("hr"),
            scopes=scopes,
        )
    return token


def _api(token: str) -> Client:
    return Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ACCEPT_LANGUAGE="en")


def _put(client: Client, path: str, body: dict):
    return client.put(path, json.dumps(body), content_type="application/json")


def test_the_hr_api_upserts_people_and_departments_idempotently():
    client = _api(_system_key(["org:write"]))
    p = unique("hr")

    # when the HR system puts a department tree and a person in it, twice
    root = _put(client, f"/api/v1/org/departments/{p}-d1", {"name": f"{p} Support"})
    child = _put(client, f"/api/v1/org/departments/{p}-d2", {"name": "Tier 2", "parent": f"{p}-d1"})
    body = {
        "username": f"{p}.zhou",
        "email": f"zhou.{p}@example.com",
        "name": "Zhou Jie",
        "title": "Agent",
        "role": "agent",
        "departments": [f"{p}-d2"],
    }
    first = _put(client, f"/api/v1/org/people/{p}-7", body)
    second = _put(client, f"/api/v1/org/people/{p}-7", body)

    # then the first creates and the second changes nothing
    assert (root.status_code, child.status_code) == (201, 201)
    assert child.json()["parent"] == f"{p}-d1"
    assert first.status_code == 201
    assert first.json()["outcome"] == "created"
    assert first.json()["departments"][0]["external_id"] == f"{p}-d2"
    assert second.status_code == 200
    assert second.json()["outcome"] == "unchanged"
    assert (
        _put(
            client, f"/api/v1/org/departments/{p}-d2", {"name": "Tier 2", "parent": f"{p}-d1"}
        ).json()["outcome"]
        == "unchanged"
    )

    # when only the title changes
    third = _put(client, f"/api/v1/org/people/{p}-7", {"title": "Lead"})
    assert third.json()["outcome"] == "updated"
    assert third.json()["title"] == "Lead"
    assert third.json()["name"] == "Zhou Jie"

    # when the person is removed upstream
    gone = client.delete(f"/api/v1/org/people/{p}-7")

    # then they are disabled, their account and departments kept
    assert gone.status_code == 204
    person = client.get(f"/api/v1/org/people/{p}-7").json()
    assert person["active"] is False
    assert person["departments"][0]["external_id"] == f"{p}-d2"
    assert client.delete(f"/api/v1/org/people/{p}-7").status_code == 204  # idempotent

    # when they come back upstream
    back = _put(client, f"/api/v1/org/people/{p}-7", {"active": True})
    assert back.json()["active"] is True


def test_the_hr_api_refuses_bad_input_and_non_admins():
    p = unique("hr")
    admin = _api(_system_key(["org:write"]))
    reader = _api(_system_key(["org:read"]))
    with schema_context("acme"):
        agent = make_agent(name="hrapi", inbox=False)

    bad_role = _put(admin, f"/api/v1/org/people/{p}-1", {"role": "boss"})
    bad_dept = _put(admin, f"/api/v1/org/people/{p}-1", {"departments": ["nope-" + p]})
    not_object = admin.put(f"/api/v1/org/people/{p}-1", "[1]", content_type="application/json")
    read_only = _put(reader, f"/api/v1/org/people/{p}-1", {"name": "X"})
    as_agent = _put(agent_client(agent), f"/api/v1/org/people/{p}-1", {"name": "X"})
    unknown = admin.get(f"/api/v1/org/people/{p}-404")

    assert bad_role.status_code == 400
    assert bad_role.json()["field"] == "role"
    assert bad_dept.status_code == 400
    assert not_object.status_code == 400
    assert read_only.status_code == 403
    assert as_agent.status_code == 403
    assert unknown.status_code == 404
    with schema_context("acme"):
        assert not User.objects.filter(external_id=f"{p}-1").exists()


def test_an_external_id_belongs_to_one_tenant():
    p = unique("hr")
    with schema_context("globex"):
        token = apikeys.api_key_create(
            kind=ApiKey.Kind.SYSTEM,
            user=User.objects.get(username="bob"),
            name=unique("hr"),
            scopes=["org:write"],
        )[1]
    globex = Client(
        HTTP_HOST="globex.localhost",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_ACCEPT_LANGUAGE="en",
    )

    _put(_api(_system_key(["org:write"])), f"/api/v1/org/people/{p}-1", {"name": "Acme one"})
    response = _put(globex, f"/api/v1/org/people/{p}-1", {"name": "Globex one"})

    assert response.status_code == 201
    with schema_context("acme"):
        assert User.objects.get(external_id=f"{p}-1").display_name == "Acme one"
