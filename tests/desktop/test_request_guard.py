"""request_guard's rules, one by one (the real-browser attack is tests/security/test_shared_origin.py)."""

from __future__ import annotations

import pytest

from rcsc3_proxy.desktop import request_guard as g

SECRET = "s3cret-of-this-desktop"
PAGE = "/user/ana/desktop/"
OWN = {g.TOKEN_HEADER: SECRET, "Sec-Fetch-Site": "same-origin", "Referer": f"http://hub.example{PAGE}"}


def test_the_pages_own_calls_pass_and_a_script_without_browser_headers_needs_only_the_secret():
    assert g.refuse_api(OWN, SECRET, PAGE) == ""
    assert g.refuse_api({g.TOKEN_HEADER: SECRET}, SECRET, PAGE) == ""  # curl with the secret: the student


@pytest.mark.parametrize("change, why", [
    ({g.TOKEN_HEADER: None}, "missing or wrong"),
    ({g.TOKEN_HEADER: "guess"}, "missing or wrong"),
    ({"Sec-Fetch-Site": "cross-site"}, "another site"),
    ({"Referer": "http://hub.example/user/eve/static/x.html"}, "not sent by the desktop page"),
    ({"Referer": None}, "without naming the page"),
])
def test_api_calls_from_anywhere_else_are_refused(change, why):
    headers = {k: v for k, v in {**OWN, **change}.items() if v is not None}
    assert why in g.refuse_api(headers, SECRET, PAGE)


@pytest.mark.parametrize("headers, refused", [
    ({}, False),  # no Fetch Metadata: an old browser or a script
    ({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, False),
    ({"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}, True),  # fetch()
    ({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, True),  # a frame
])
def test_the_page_is_served_to_top_level_navigations_only(headers, refused):
    assert bool(g.refuse_page(headers)) is refused


def test_the_stream_needs_the_secret():
    assert g.refuse_stream({"Sec-Fetch-Site": "same-origin"}, SECRET, SECRET) == ""
    assert "missing or wrong" in g.refuse_stream({}, None, SECRET)
    assert "missing or wrong" in g.refuse_stream({}, SECRET[:-1], SECRET)
    assert "another site" in g.refuse_stream({"Sec-Fetch-Site": "same-site"}, SECRET, SECRET)


def test_the_page_path_follows_the_servers_prefix():
    assert g.page_path({"JUPYTERHUB_SERVICE_PREFIX": "/user/ana/"}) == PAGE
    assert g.page_path({}) == "/desktop/"
