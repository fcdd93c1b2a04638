"""team.http: XML-RPC over HTTP on loopback, its password from the environment, served by the
web program and passed on to supervisord's unix socket (supervisord itself opens no TCP port:
issue 26, finding 2)."""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import threading
import time
import xmlrpc.client

import psutil

import pytest
import yaml

from coffee_team import confgen
from coffee_team.errors import TeamError
from coffee_team.team import load_team, parse_team
from supervisor.xmlrpc import SupervisorTransport
from coffee_team.dashboard import httpd
from coffee_team.web import rpcproxy
from tests.harness import FAST_TEAM, boot_supervisord, demo_agents, temporary_project, wait_until

pytestmark = pytest.mark.slow

PASSWORD_ENV = "COFFEE_TEST_RPC_PASSWORD"
PASSWORD = "s3cret-Tr0ub4dor&3"
# team.http.head_timeout here (10 s by default): the flood's idle connections are cut the same
# way, sooner; every client here sends its request at once.
HEAD_TIMEOUT = 3.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_proxy(port: int, username: str | None, password: str | None):
    """The standard library client over HTTP with basic auth (supervisor's transport)."""
    transport = SupervisorTransport(username, password, f"http://127.0.0.1:{port}")
    return xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}", transport=transport)


def plain_http_proxy(port: int, credentials: str = ""):
    """Only the standard library: http://user:password@host:port/RPC2."""
    return xmlrpc.client.ServerProxy(f"http://{credentials}127.0.0.1:{port}/RPC2")


@pytest.fixture(scope="module")
def http_team():
    """One supervisord for the module, booted with the password only in its environment."""
    with temporary_project() as project:
        port = free_port()
        project.write_team(http={"port": port, "username": "automation",
                                 "password_env": PASSWORD_ENV, "head_timeout": HEAD_TIMEOUT})
        boot_supervisord(project, env={PASSWORD_ENV: PASSWORD})
        project.wait_states("RUNNING", timeout=40)
        project.port = port
        yield project


def test_both_namespaces_over_http_with_credentials(http_team):
    port = http_team.port
    for rpc in (http_proxy(port, "automation", PASSWORD),
                plain_http_proxy(port, f"automation:{PASSWORD}@")):
        assert rpc.supervisor.getState()["statename"] == "RUNNING"
        assert rpc.coffee.getAPIVersion()
        status = rpc.coffee.getTeamStatus()
        assert status["agents_running"] == len(http_team.team.names)
        task = rpc.coffee.sendMessage("http", "architect", "ping", '{"over": "http"}', 4)
        assert any(t["id"] == task for t in rpc.coffee.listTasks({"agent": "architect"}))
        assert isinstance(rpc.coffee.getQueueStats(), dict)
        assert isinstance(rpc.coffee.getEvents(0, 10), list)
        assert isinstance(rpc.coffee.getNotifications(0), list)
        assert rpc.coffee.getRestartHistory("architect", 5)["agent"] == "architect"
        assert "bottlenecks" in rpc.coffee.getMetrics(1)
        with pytest.raises(xmlrpc.client.Fault):
            rpc.coffee.ackNotification(12345)
    rpc = http_proxy(port, "automation", PASSWORD)
    assert rpc.coffee.restartAgent("assistant") is True
    http_team.wait_states({"assistant": "RUNNING"}, 20)


@pytest.mark.parametrize("username,password", [(None, None), ("automation", "wrong"),
                                               ("intruder", PASSWORD), ("automation", "")])
def test_without_the_right_credentials_it_is_401(http_team, username, password):
    for method in ("supervisor.getState", "coffee.getTeamStatus", "coffee.sendMessage"):
        rpc = http_proxy(http_team.port, username, password)
        target = rpc
        for part in method.split("."):
            target = getattr(target, part)
        with pytest.raises(xmlrpc.client.ProtocolError) as info:
            target("x", "architect", "ping", {}, 5) if method.endswith("sendMessage") else target()
        assert info.value.errcode == 401
    # nothing was enqueued and the server still answers
    rpc = http_proxy(http_team.port, "automation", PASSWORD)
    assert not [t for t in rpc.coffee.listTasks({"limit": 1000}) if t["sender"] == "x"]
    assert rpc.supervisor.getState()["statename"] == "RUNNING"


def test_unix_socket_stays_private_and_answers_without_password(http_team):
    sock = http_team.root / "data" / "run" / "supervisor.sock"
    assert oct(os.stat(sock).st_mode & 0o777) == oct(0o700)
    assert http_team.rpc().coffee.getAPIVersion()


def test_http_binds_loopback_only(http_team):
    listening = [c for c in __import__("psutil").net_connections("tcp")
                 if c.laddr and c.laddr.port == http_team.port and c.status == "LISTEN"]
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)


def test_password_is_never_written_to_a_file(http_team):
    rpc = http_proxy(http_team.port, "automation", PASSWORD)
    rpc.coffee.getTeamStatus()
    needle = PASSWORD.encode()
    for path in http_team.root.rglob("*"):
        if path.is_file() and not path.is_socket():
            assert needle not in path.read_bytes(), path
    conf = (http_team.root / "supervisord.conf.d" / "supervisord.conf").read_text()
    assert "[inet_http_server]" not in conf and "[program:web]" in conf


def test_cli_over_http(http_team):
    env = {"SUPERVISOR_SERVER_URL": f"http://127.0.0.1:{http_team.port}",
           "SUPERVISOR_USERNAME": "automation", "SUPERVISOR_PASSWORD": PASSWORD}
    data = json.loads(http_team.cli("status", "--json", env=env, check=True).stdout)
    assert data["agents_running"] == len(http_team.team.names)
    wrong = http_team.cli("status", env={**env, "SUPERVISOR_PASSWORD": "nope"})
    assert wrong.returncode == 3 and "wrong username or password" in wrong.stderr


def test_the_web_program_refuses_to_serve_without_the_password_variable(project):
    """A plain `supervisord -c` without the variable: the agents run, the web program says
    which variable in one line and gives up (supervisord's FATAL); `start` refuses earlier."""
    project.write_team(agents=dict(list(demo_agents().items())[:1]),
                       http={"port": free_port(), "username": "automation",
                             "password_env": "COFFEE_TEST_UNSET_PASSWORD"})
    boot_supervisord(project)
    project.wait_states({"web": "FATAL"}, timeout=40)
    log = (project.root / "data" / "logs" / "web.log").read_text()
    assert "team.http.password_env: the environment variable COFFEE_TEST_UNSET_PASSWORD is " \
           "not set" in log and "Traceback" not in log


# --- the port against floods, supervisor's web UI and huge bodies -----------------------------

def raw_http(port: int, request: bytes, timeout: float = 10) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    return data, time.monotonic() - started


AUTH = "Basic " + base64.b64encode(f"automation:{PASSWORD}".encode()).decode()
FLOOD = 1100  # the finding: ~1,100 idle connections used up supervisord's 1,024 descriptors


def test_an_idle_flood_never_reaches_supervisord(http_team, reliability):
    """Finding 2: idle unauthenticated connections to the http port exhausted supervisord's
    descriptors, and a crashed agent then failed "too many open files to spawn". Now the port
    is the web program's: supervisord's descriptors do not move, an authenticated call is
    answered during the flood, a killed agent is restarted, and each idle connection is
    closed within the head timeout."""
    port = http_team.port
    supervisord = http_team.supervisord()
    assert not supervisord.net_connections("inet")  # it listens on its unix socket only
    web = psutil.Process(http_team.infos()["web"]["pid"])
    fds_before = supervisord.num_fds()
    flood, threads_max = [], 0
    try:
        started = time.monotonic()
        for i in range(FLOOD):
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            if i % 100 == 0:
                threads_max = max(threads_max, web.num_threads())
        opened_in = time.monotonic() - started
        # those not evicted by later ones are cut at the head timeout, seen as it happens
        # (the restart below may take longer)
        closed_at: list = []
        watch = threading.Thread(target=watch_closes, daemon=True,
                                 args=(flood[-httpd.MAX_CONNECTIONS:], started, closed_at))
        watch.start()
        fds_during = supervisord.num_fds()
        asked = time.monotonic()
        assert http_proxy(port, "automation", PASSWORD).supervisor.getState()["statename"] \
            == "RUNNING"
        answered_in = time.monotonic() - asked
        victim = "assistant"
        pid = http_team.infos()[victim]["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        def restarted() -> bool:
            info = http_team.infos()[victim]
            return info["statename"] == "RUNNING" and info["pid"] not in (0, pid)
        wait_until(restarted, 30, 0.1, "the restart")
        restarted_in = time.monotonic() - killed
        watch.join()
    finally:
        for sock in flood:
            sock.close()
    assert fds_during - fds_before < 10, (fds_before, fds_during)
    soft_limit, _ = supervisord.rlimit(psutil.RLIMIT_NOFILE)  # minfds: room to spawn agents
    assert fds_during * 4 < soft_limit
    assert threads_max <= httpd.HARD_LIMIT * httpd.MAX_CONNECTIONS + 10
    assert answered_in < 2.0 and restarted_in < 15
    assert len(closed_at) == httpd.MAX_CONNECTIONS
    assert max(closed_at) < opened_in + HEAD_TIMEOUT + 2
    reliability("idle connections on the http port", f"{FLOOD} idle TCP connections, "
                "demo team", "connection flood + kill -9 of an agent during it", 0, "0",
                f"supervisord fds {fds_before} -> {fds_during}; web program <= {threads_max} "
                f"threads; authenticated call {answered_in:.2f}s; agent restarted "
                f"{restarted_in:.1f}s after the kill; idle ones closed <= "
                f"{max(closed_at) - opened_in:.1f}s (head_timeout {HEAD_TIMEOUT:g}s)")


def watch_closes(socks: list, started: float, closed_at: list) -> None:
    """Appends, for each socket in turn, the time (since ``started``) it was seen closed by
    the server: their maximum is when the last one closed."""
    for sock in socks:
        sock.settimeout(HEAD_TIMEOUT + 5)
        try:
            if sock.recv(1024) != b"":
                continue  # an answer, not a close: missing from closed_at
        except ConnectionResetError:
            pass
        except OSError:  # timed out (still open), or closed here: missing from closed_at
            continue
        closed_at.append(time.monotonic() - started)


@pytest.mark.parametrize("path", ["/", "/index.html?processname=architect&action=stop",
                                  "/tail.html?processname=architect", "/logtail/architect",
                                  "/RPC2"])
def test_supervisors_web_ui_is_never_served(http_team, path):
    """Its GET links stop programs (CSRF-able from any site with cached credentials)."""
    pid = http_team.infos()["architect"]["pid"]
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    answer, _ = raw_http(http_team.port, (request + "\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 401")
    answer, _ = raw_http(http_team.port, f"{request}Authorization: {AUTH}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 404") and b"Supervisor" not in answer
    time.sleep(0.3)
    assert http_team.infos()["architect"]["statename"] == "RUNNING"
    assert http_team.infos()["architect"]["pid"] == pid


def test_a_huge_xmlrpc_body_is_refused_before_supervisord_sees_it(http_team, reliability):
    """Finding 7: an authenticated 300 MB body took supervisord to 2.8 GB."""
    supervisord = http_team.supervisord()
    rss_before = supervisord.memory_info().rss
    head = (f"POST /RPC2 HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {300 * 2**20}\r\n\r\n").encode()
    answer, took = raw_http(http_team.port, head + b"<?xml version='1.0'?>" + b" " * 65536)
    assert answer.startswith(b"HTTP/1.1 413") and took < 1.0, (answer[:80], took)
    grown = supervisord.memory_info().rss - rss_before
    assert grown < 20 * 2**20
    # what the documented limits allow still passes: a task content of ~900 KB
    rpc = http_proxy(http_team.port, "automation", PASSWORD)
    content = json.dumps({"text": "x" * 900_000})
    assert rpc.coffee.sendMessage("http", "architect", "big", content, 5) > 0
    assert len(content) * 2 < rpcproxy.MAX_BODY
    reliability("huge XML-RPC body", "1 authenticated POST /RPC2, Content-Length 300 MB",
                "oversized request", 0, "0",
                f"413 in {took * 1000:.0f} ms; supervisord RSS +{grown / 2**20:.1f} MB; a 900 KB "
                "task content still accepted")


# --- validation (no supervisord) -----------------------------------------------------------

def team_doc(**http):
    return {"team": {**FAST_TEAM, "http": http}, "agents": demo_agents()}


GOOD = {"port": 9001, "username": "automation", "password_env": PASSWORD_ENV}


@pytest.mark.parametrize("http,message", [
    ({**GOOD, "host": "0.0.0.0"}, "not a loopback address"),
    ({**GOOD, "host": "192.168.1.10"}, "allow_remote: true"),
    ({**GOOD, "host": "example.com"}, "not a loopback address"),
    ({**GOOD, "host": "*"}, "IPv4 address or host name"),
    ({**GOOD, "host": "::1"}, "IPv4 address or host name"),
    ({**GOOD, "host": "127.0.0.1 ;x"}, "IPv4 address or host name"),
    ({"port": 9001, "username": "automation"}, "missing password_env"),
    ({"port": 9001, "password_env": PASSWORD_ENV}, "missing username"),
    ({**GOOD, "password_env": "not a name"}, "environment variable"),
    ({**GOOD, "password_env": "X)s%(Y"}, "environment variable"),
    ({**GOOD, "username": "a:b"}, "user name"),
    ({**GOOD, "port": 0}, "integer from 1 to 65535"),
    ({**GOOD, "password": "inline"}, "unknown key"),
    ({**GOOD, "allow_remote": "yes"}, "true or false"),
])
def test_bad_http_settings_are_one_line_team_errors(http, message):
    with pytest.raises(TeamError) as info:
        parse_team(team_doc(**http), "team.yaml")
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith("team.yaml: team.http")


def test_remote_host_needs_allow_remote_and_loopback_names_are_fine():
    for host in ("127.0.0.1", "127.0.0.2", "localhost"):
        team = parse_team(team_doc(**GOOD, host=host), "team.yaml")
        assert team.settings.http.host == host and "[program:web]" in confgen.main_config(team)
    team = parse_team(team_doc(**GOOD, host="0.0.0.0", allow_remote=True), "team.yaml")
    assert team.settings.http.host == "0.0.0.0" and "[program:web]" in confgen.main_config(team)


def test_gen_config_refuses_a_remote_host(project):
    project.write_team()
    doc = yaml.safe_load(project.team_file.read_text())
    doc["team"]["http"] = {**GOOD, "host": "10.0.0.1"}
    project.team_file.write_text(yaml.safe_dump(doc))
    result = project.cli("gen-config")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not a loopback address" in result.stderr
    assert "inet_http_server" not in project.conf.read_text()


def test_generated_config_registers_coffee_next_to_supervisor(project):
    project.write_team()
    conf = project.conf.read_text()
    assert "[rpcinterface:coffee]\nsupervisor.rpcinterface_factory=" \
           "coffee_team.rpc.interface:make_coffee_rpcinterface\nteam=%(here)s/../data/team.yaml" in conf
    assert "[inet_http_server]" not in conf  # only the 0700 unix socket by default
    assert load_team(project.team_file).settings.http is None


def test_start_without_the_password_variable_says_which_one(project):
    project.write_team(http={"port": free_port(), "username": "automation",
                             "password_env": "COFFEE_TEST_UNSET_PASSWORD"})
    result = project.cli("start")
    assert result.returncode == 2, result.stderr
    assert "COFFEE_TEST_UNSET_PASSWORD is not set" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


@pytest.mark.parametrize("output, reason", [
    ("Error: Another program is already listening on a port that one of our HTTP servers is "
     "configured to use.  Shut this program down first before starting supervisord.\n"
     "For help, use /x/supervisord -h\n", "Another program is already listening"),
    ("Error: Format string '%(ENV_X)s' for 'inet_http_server.password' contains names ('ENV_X') "
     "which cannot be expanded. Available names: ENV_HOME, ENV_PATH\nFor help, use x -h\n",
     "contains names ('ENV_X') which cannot be expanded."),
    ("", "exit status 2"),
])
def test_supervisord_startup_error_is_its_reason_line(output, reason):
    from coffee_team.client import startup_error
    line = startup_error(output, 2)
    assert reason in line and "For help" not in line and "ENV_HOME" not in line
