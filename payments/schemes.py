"""The national schemes outside production: each scheme's simulator, and the adapter that
reaches it through the in-process transport, built from the gateway's settings.

The simulated terminals' credentials are derived from `GATEWAY_SECRET_KEY`, so every node of a
deployment (sharing the secret key and the sandbox's store) signs and decrypts alike, and no
two deployments share a key.
"""

from __future__ import annotations

import hmac

from config import BENEFIT, KNET, OMANNET, Settings
from providers import Provider
from providers.omannet import OmanNetProvider, OmanNetTerminal
from providers.omannet_simulator import OmanNetSimulator
from providers.omannet_simulator import SimulatorRefused as OmanNetRefused
from providers.simulators import SchemeDesk
from providers.tranportal import SCHEMES as TRANPORTAL_SCHEMES
from providers.tranportal import TranportalProvider, TranportalTerminal
from providers.tranportal_simulator import SimulatorRefused as TranportalRefused
from providers.tranportal_simulator import TranportalSimulator
from providers.transport import Handler, LocalTransport


def _secret(settings: Settings, purpose: str, length: int) -> str:
    """A simulated terminal's credential: hex, `length` characters, this deployment's own."""
    mac = hmac.new(settings.secret_key.encode(), f"scheme simulator {purpose}".encode(), "sha256")
    return mac.hexdigest()[:length]


def page_url(settings: Settings, scheme: str) -> str:
    return f"{settings.public_url}/sandbox/{scheme}/pay"


def server_url(settings: Settings, scheme: str) -> str:
    return f"{settings.public_url}/sandbox/{scheme}/server"


def build_schemes(settings: Settings) -> tuple[list[Provider], dict[str, SchemeDesk]]:
    """The schemes' test-mode adapters and their simulators' desks; none in production."""
    if settings.is_production:
        return [], {}
    store = settings.sandbox_database
    providers: list[Provider] = []
    desks: dict[str, SchemeDesk] = {}
    handlers: dict[str, Handler] = {}
    terminals: dict[str, TranportalTerminal] = {}
    for name in (KNET, BENEFIT):
        terminal = terminals[name] = TranportalTerminal(
            tranportal_id=f"{name}sim",
            password=_secret(settings, f"{name} password", 16),
            resource_key=_secret(settings, f"{name} resource key", 32),
        )
        simulator = TranportalSimulator(TRANPORTAL_SCHEMES[name], terminal, store)
        handlers[server_url(settings, name)] = simulator.handle_tranportal
        desks[name] = SchemeDesk(
            scheme=name,
            simulator=simulator,
            serve=simulator.handle_tranportal,
            refused=(TranportalRefused,),
            settlement_file=simulator.settlement_file,
        )
    oman_terminal = OmanNetTerminal(
        merchant_id="OMANNETSIM",
        access_code=_secret(settings, "omannet access code", 8).upper(),
        secure_secret=_secret(settings, "omannet secure secret", 64).upper(),
        user="gateway",
        password=_secret(settings, "omannet password", 24),
    )
    oman = OmanNetSimulator(oman_terminal, store)
    handlers[server_url(settings, OMANNET)] = oman.handle_query
    desks[OMANNET] = SchemeDesk(
        scheme=OMANNET,
        simulator=oman,
        serve=oman.handle_query,
        refused=(OmanNetRefused,),
        settlement_file=oman.settlement_file,
    )
    transport = LocalTransport(handlers)
    for name in (KNET, BENEFIT):
        providers.append(
            TranportalProvider(
                name,
                TRANPORTAL_SCHEMES[name],
                terminals[name],
                page_url(settings, name),
                server_url(settings, name),
                transport,
            )
        )
    providers.append(
        OmanNetProvider(
            OMANNET,
            oman_terminal,
            page_url(settings, OMANNET),
            server_url(settings, OMANNET),
            transport,
        )
    )
    return providers, desks
