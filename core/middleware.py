from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware

from core.outages import outage_answer


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Django's login-required middleware, except under /api/v1/.

    The API authenticates by bearer token or session itself and answers 401 in JSON, which an
    automation client can act on, instead of a redirect to the login page.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path.startswith("/api/v1/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class OutageMiddleware:
    """Answers 503 (core.outages) instead of 500 when a view fails because PostgreSQL or Redis is down.

    Exceptions raised before the view (the session, the user, CSRF) reach `handler500` instead,
    which is `core.views.server_error` and answers the same way.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        return outage_answer(request, exception)
