"""Every PostgreSQL connection is bounded (issue 26, partitions): keepalives, a TCP user
timeout, a connect timeout and server-side statement, lock and idle-transaction timeouts, each
overridable from the database URL (pg_session.connection_params; pure, no server)."""
from coffee_team.queue.pg_session import (CONNECT_SECONDS, KEEPALIVE, SERVER_SETTINGS,
                                          TCP_USER_TIMEOUT_MS, bounded_pg_params,
                                          connection_params)


def settings_of(options: str) -> dict[str, str]:
    parts = options.split()
    return dict(parts[i + 1].split("=", 1) for i in range(len(parts)) if parts[i] == "-c")


def test_defaults_bound_every_wait():
    params = connection_params({})
    assert params["connect_timeout"] == CONNECT_SECONDS
    assert params["tcp_user_timeout"] == TCP_USER_TIMEOUT_MS
    assert {k: params[k] for k in KEEPALIVE} == KEEPALIVE
    server = settings_of(params["options"])
    assert server == {k: str(v) for k, v in SERVER_SETTINGS.items()}
    # ~20 s to notice a silent peer on either side, a bounded statement, lock and transaction
    assert KEEPALIVE["keepalives_idle"] + KEEPALIVE["keepalives_interval"] * \
        KEEPALIVE["keepalives_count"] <= 20
    assert {"statement_timeout", "lock_timeout",
            "idle_in_transaction_session_timeout"} <= set(server)


def test_the_url_wins():
    params = connection_params({"keepalives_idle": "30", "tcp_user_timeout": "60000",
                                "statement_timeout": "600000", "connect_timeout": "3"})
    assert params["keepalives_idle"] == "30" and params["tcp_user_timeout"] == "60000"
    assert params["connect_timeout"] == "3"
    assert "statement_timeout" not in params  # not a libpq parameter: moved into options
    assert settings_of(params["options"])["statement_timeout"] == "600000"


def test_a_setting_in_the_urls_own_options_is_left_to_it():
    params = connection_params({"options": "-c search_path=s1 -c lock_timeout=5000"})
    server = settings_of(params["options"])
    assert server["search_path"] == "s1" and server["lock_timeout"] == "5000"
    assert params["options"].count("lock_timeout") == 1
    assert server["statement_timeout"] == str(SERVER_SETTINGS["statement_timeout"])


def test_old_libpq_has_no_tcp_user_timeout():
    assert "tcp_user_timeout" not in connection_params({}, libpq_version=110000)


def test_bounded_comes_last_so_it_wins():
    params = bounded_pg_params(connection_params({}), 200)
    options = params["options"].split()
    last = {}
    for i, part in enumerate(options):
        if part == "-c":
            name, value = options[i + 1].split("=", 1)
            last[name] = value
    assert last["statement_timeout"] == "200" and last["lock_timeout"] == "200"
    assert params["tcp_user_timeout"] == 3000
