"""The generated nats-server configuration: users, route credentials during a rotation, TLS blocks."""

from __future__ import annotations

from pathlib import Path

from sqlite_ha.natsd_config import NatsServerOptions, render_config


def test_no_credentials_no_authorization(tmp_path: Path) -> None:
    text = "\n".join(render_config(NatsServerOptions(name="n", store_dir=tmp_path)))
    assert "authorization" not in text
    assert "tls" not in text
    assert "cluster" not in text


def test_two_secrets_two_users_and_routes_tried_with_each(tmp_path: Path) -> None:
    options = NatsServerOptions(
        name="n",
        store_dir=tmp_path,
        user="u-new",
        password='p"new',
        other_users=(("u-old", "p-old"),),
        route_logins=(("u-new", 'p"new'), ("u-old", "p-old")),
        cluster_port=6222,
        routes=("10.0.0.2:6222", "nats-route://x:y@10.0.0.3:6222"),
    )
    text = "\n".join(render_config(options))
    assert '{user: "u-new", password: "p\\"new"}' in text
    assert '{user: "u-old", password: "p-old"}' in text
    # one login per route, the first by default; a route whose peer refused it presents the next one
    new2, new3 = "nats-route://u-new:p%22new@10.0.0.2:6222", "nats-route://u-new:p%22new@10.0.0.3:6222"
    assert f'routes: ["{new2}", "{new3}"]' in text
    switched = "\n".join(render_config(options, {"10.0.0.3:6222": 1}))
    assert f'routes: ["{new2}", "nats-route://u-old:p-old@10.0.0.3:6222"]' in switched
    cluster = text[text.index("cluster {") :]
    assert 'user: "u-new"' in cluster  # incoming routes: the first login only (one user per cluster block)
    assert 'user: "u-old"' not in cluster


def test_tls_on_the_client_port_and_verified_routes(tmp_path: Path) -> None:
    options = NatsServerOptions(
        name="n",
        store_dir=tmp_path,
        tls_cert=Path("c.pem"),
        tls_key=Path("k.pem"),
        tls_ca=Path("ca.pem"),
        cluster_port=6222,
    )
    lines = render_config(options)
    text = "\n".join(lines)
    client = text[text.index("\ntls {") : text.index("cluster {")]
    assert f'cert_file: "{Path("c.pem").resolve()}"' in client
    assert "verify" not in client  # clients log in with a password, not a certificate
    cluster = text[text.index("cluster {") :]
    assert f'ca_file: "{Path("ca.pem").resolve()}"' in cluster
    assert "verify: true" in cluster
