"""The organisation (ORG-1, ORG-2 basics): the department tree, the directory the inbox uses to
find colleagues, and the back office for both."""

from __future__ import annotations

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from org import selectors, services
from org.models import Department, User
from tenants.models import Tenant
from tests.conftest import PASSWORD, session_cookie, unique
from weiyu.errors import ServiceError

HOST = "acme.localhost"


def _person(display: str, title: str = "", active: bool = True) -> User:
    return User.objects.create_user(
        username=unique("p"),
        password=PASSWORD,
        display_name=display,
        title=title,
        is_active=active,
    )


def _browser(user: User, schema: str = "acme") -> Client:
    client = Client(HTTP_HOST=f"{schema}.localhost", HTTP_ACCEPT_LANGUAGE="en")
    name, value = (
        session_cookie(Tenant.objects.get(schema_name=schema), user).decode().split("=", 1)
    )
    client.cookies[name] = value
    return client


@pytest.fixture
def org(acme):
    """root > (sales > east, support); people in sales, east and support."""
    with schema_context("acme"):
        root = services.department_create(name=unique("公司"))
        sales = services.department_create(name=unique("销售部"), parent=root)
        east = services.department_create(name=unique("华东区"), parent=sales)
        support = services.department_create(name=unique("客服部"), parent=root)
        zhang = _person(unique("张伟"), title="销售经理")
        li = _person(unique("李娜"), title=unique("Account executive"))
        wang = _person(unique("王芳"), title="客服专员")
        gone = _person(unique("张离职"), active=False)
        services.department_member_add(department=sales, user=zhang, is_head=True)
        services.department_member_add(department=east, user=li)
        services.department_member_add(department=support, user=wang)
        services.department_member_add(department=support, user=zhang)  # two departments
        services.department_member_add(department=east, user=gone)
    return {
        "root": root,
        "sales": sales,
        "east": east,
        "support": support,
        "zhang": zhang,
        "li": li,
        "wang": wang,
        "gone": gone,
    }


def _find(tree: list[dict], dept_id: int) -> dict | None:
    for node in tree:
        if node["id"] == dept_id:
            return node
        found = _find(node["children"], dept_id)
        if found:
            return found
    return None


def test_tree_has_the_shape_counts_and_heads(org):
    with schema_context("acme"):
        tree = selectors.department_tree()
    root = _find(tree, org["root"].pk)
    assert sorted(c["id"] for c in root["children"]) == sorted([org["sales"].pk, org["support"].pk])
    sales = _find(tree, org["sales"].pk)
    assert [c["id"] for c in sales["children"]] == [org["east"].pk]
    assert sales["head"] == {"id": org["zhang"].pk, "name": org["zhang"].name}
    assert _find(tree, org["east"].pk)["member_count"] == 1  # the inactive person is not counted
    assert _find(tree, org["support"].pk)["member_count"] == 2


def test_move_and_refuse_to_delete_a_department_that_is_not_empty(org):
    with schema_context("acme"):
        services.department_move(department=org["east"], parent=org["support"])
        tree = selectors.department_tree()
        assert _find(tree, org["east"].pk)["parent_id"] == org["support"].pk
        with pytest.raises(ServiceError) as exc:
            services.department_move(department=org["support"], parent=org["east"])
        assert exc.value.code == "invalid"
        with pytest.raises(ServiceError) as exc:
            services.department_delete(department=org["support"])
        assert exc.value.code == "conflict"
        empty = services.department_create(name=unique("空部门"), parent=org["root"])
        services.department_delete(department=empty)
        assert not Department.objects.filter(pk=empty.pk).exists()


def test_directory_finds_by_chinese_name_and_title_within_a_department_and_its_children(org):
    with schema_context("acme"):
        by_name, total = selectors.directory_list(query=org["zhang"].display_name[:3])
        assert org["zhang"] in by_name
        assert org["gone"] not in by_name
        by_title, _ = selectors.directory_list(query=org["li"].title)
        assert by_title == [org["li"]]
        in_sales, total = selectors.directory_list(department=org["sales"])
        assert {u.pk for u in in_sales} == {org["zhang"].pk, org["li"].pk}
        assert total == 2
        only_sales, _ = selectors.directory_list(department=org["sales"], include_descendants=False)
        assert only_sales == [org["zhang"]]


def test_directory_and_tree_api(org):
    client = _browser(org["wang"])
    tree = client.get("/api/v1/org/departments").json()["departments"]
    assert _find(tree, org["east"].pk)["name"] == org["east"].name
    body = client.get("/api/v1/org/directory", {"department": org["sales"].pk}).json()
    assert body["count"] == 2
    zhang = next(u for u in body["users"] if u["id"] == org["zhang"].pk)
    assert zhang["key"] == f"u:{org['zhang'].pk}"
    assert zhang["title"] == "销售经理"
    assert {d["id"] for d in zhang["departments"]} == {org["sales"].pk, org["support"].pk}
    for params in ({"department": "abc"}, {"department": 999999}, {"limit": 0}, {"limit": "x"}):
        response = client.get("/api/v1/org/directory", params)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid"
    assert Client(HTTP_HOST=HOST).get("/api/v1/org/directory").status_code in (401, 403)


def test_other_tenants_see_neither_the_departments_nor_the_people(org, globex):
    with schema_context("globex"):
        outsider = _person("Outsider")
    client = _browser(outsider, schema="globex")
    tree = client.get("/api/v1/org/departments").json()["departments"]
    assert (
        _find(tree, org["root"].pk) is None
        or _find(tree, org["root"].pk)["name"] != org["root"].name
    )
    names = [u["name"] for u in client.get("/api/v1/org/directory", {"q": "张"}).json()["users"]]
    assert org["zhang"].name not in names
    intruder = Client(HTTP_HOST=HOST)
    name, value = (
        session_cookie(Tenant.objects.get(schema_name="globex"), outsider).decode().split("=", 1)
    )
    intruder.cookies[name] = value
    assert intruder.get("/api/v1/org/directory").status_code in (401, 403)


def test_back_office_shows_the_tree_and_a_persons_departments(org):
    with schema_context("acme"):
        bob = User.objects.get(username="bob")
    admin = _browser(bob)
    tree = admin.get("/admin/org/department/")
    assert tree.status_code == 200
    assert org["root"].name in tree.content.decode()
    person = admin.get(f"/admin/org/user/{org['zhang'].pk}/change/")
    assert person.status_code == 200
    assert org["support"].name in person.content.decode()
    add = admin.post(
        "/admin/org/department/add/",
        {
            "name": "新部门 New team",
            "treebeard_position": "sorted-child",
            "treebeard_ref_node": str(org["root"].pk),
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert add.status_code == 302, add.content.decode()[:3000]
    with schema_context("acme"):
        created = Department.objects.get(name="新部门 New team")
        assert Department.objects.get_parent(created).pk == org["root"].pk
