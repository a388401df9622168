"""Minimal German HTML frame for the emulator's pages (Jinja strings, no template files)."""

from __future__ import annotations

from flask import render_template_string

_LAYOUT = """<!doctype html>
<html lang="de"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font-family:Arial,Helvetica,sans-serif;background:#f2f4f5;margin:0;color:#1f2d3a}
header{background:#{{ color }};color:#fff;padding:12px 24px;font-size:18px;font-weight:bold}
main{max-width:760px;margin:24px auto;background:#fff;padding:24px 32px;border-radius:4px;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
button{background:#{{ color }};color:#fff;border:0;padding:8px 16px;margin:4px 4px 4px 0;
border-radius:3px;cursor:pointer;font-size:14px}
button.secondary{background:#8a99a8}
.qr{width:160px;height:160px;border:8px solid #1f2d3a;background:repeating-linear-gradient(45deg,#1f2d3a 0 8px,
#fff 8px 16px);margin:12px 0}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #dde;padding:6px;text-align:left}
.error{color:#b00020}
</style></head>
<body><header>{{ header }}</header><main data-testid="emulator-page">{{ body|safe }}</main></body></html>
"""


def page(title: str, body_template: str, header: str = "Token Desk Emulator", color: str = "0b5a2a",
         status: int = 200, **context):
    body = render_template_string(body_template, **context)
    return render_template_string(_LAYOUT, title=title, header=header, body=body, color=color), status
