"""A trivial WSGI app for the gunicorn executor test."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
