"""The one HTTP call the tool tests make: GET a node's endpoint."""

import urllib.error
import urllib.request


def get(url):
    """(status, body) of GET `url`; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
