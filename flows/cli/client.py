"""HTTP calls to /api/v1/, with the API's error shape turned into one
exception that the commands print as a sentence (no traceback)."""

import httpx


class ApiFailure(Exception):
    def __init__(self, status: int, code: str, message: str, details=None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def __str__(self) -> str:
        text = f"{self.message} (HTTP {self.status}, {self.code})" if self.status else self.message
        if self.details:
            text += f"\n{self.details}"
        return text


class Client:
    def __init__(self, url: str, token: str, timeout: float = 30.0):
        if not url:
            raise ApiFailure(0, "not_logged_in", "No server: run `ledgerflow login URL` "
                             "or set LEDGERFLOW_URL.")  # fmt: skip
        if not token:
            raise ApiFailure(0, "not_logged_in", "No token: run `ledgerflow login URL` "
                             "or set LEDGERFLOW_TOKEN.")  # fmt: skip
        self.http = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
        )

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            where = self.http.base_url
            raise ApiFailure(0, "unreachable", f"Cannot reach {where}: {exc}") from None
        if response.status_code >= 400:
            raise failure(response)
        return response

    def json(self, method: str, path: str, **kwargs):
        return self.request(method, path, **kwargs).json()


def failure(response: httpx.Response) -> ApiFailure:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    message = error.get("message") or response.reason_phrase or "Request failed"
    if response.status_code == 401:
        message = f"{message} Check the token (`ledgerflow login URL`, or LEDGERFLOW_TOKEN)."
    return ApiFailure(
        response.status_code, error.get("code") or "error", message, error.get("details")
    )
