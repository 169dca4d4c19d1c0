"""Change data capture: Cloud SQL for PostgreSQL with logical decoding, and Debezium Server on
Cloud Run publishing to the CDC topics.

Debezium Server runs with one instance always on and its CPU always allocated (it holds a
replication connection and polls), its properties file exactly as the project keeps it
(``streamforge/cdc/debezium/application.properties``, mounted from Secret Manager as
``/debezium/config/application.properties``), and a Cloud SQL Auth Proxy sidecar on
127.0.0.1:5432: the instance has no authorized networks, the proxy authenticates with the
service's identity. The file's ``${NAME}`` placeholders are filled from the environment; the
program checks that every placeholder without a default is given, the password from Secret
Manager. The account may publish to the CDC topics and nothing else.

The replication role, the publication and the slot need SQL, which Pulumi's Google provider
cannot run: ``streamforge cdc setup`` does it once, through the proxy (docs/infra.md); the
slot is created by Debezium on its first start.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.component import Area
from infra.identities import Identities
from infra.messaging import Messaging
from infra.secret_manager import managed_secret
from infra.settings import SHOP_INSTANCE, Settings, SettingsError
from infra.storage import Storage
from streamforge.cdc.config import ConfigError, DebeziumServerConfig, render_pii_salt

__all__ = ["CLOUD_SQL_PROXY_IMAGE", "ChangeCapture", "debezium_environment"]

CLOUD_SQL_PROXY_IMAGE = "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.18.2"
_PASSWORD = "POSTGRES_PASSWORD"
_PORT = 5432


def _render(text: str, salt: str) -> str:
    try:
        return render_pii_salt(text, salt)
    except ConfigError:
        raise SettingsError(
            "streamforge:cdcPiiSalt: 16 to 128 lower-case hex digits "
            '(pulumi config set --secret streamforge:cdcPiiSalt "$(openssl rand -hex 16)")'
        ) from None


def debezium_environment(settings: Settings, debezium: DebeziumServerConfig) -> dict[str, str]:
    """The plain environment of Debezium Server; SettingsError if the properties file needs a
    variable without a default that neither this nor the password secret gives."""
    environment = {
        "GCP_PROJECT": settings.project,
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(_PORT),
        "POSTGRES_USER": settings.cdc.user,
        "POSTGRES_DB": settings.cdc.database,
    }
    used = debezium.placeholders()
    missing = sorted({name for name, default in used.items() if default is None} - set(environment) - {_PASSWORD})
    if missing:
        raise SettingsError(f"{debezium.path} needs {', '.join(missing)}, which infra/cdc.py does not set")
    return {name: value for name, value in environment.items() if name in used}


class ChangeCapture(Area):
    def __init__(
        self,
        settings: Settings,
        debezium: DebeziumServerConfig,
        identities: Identities,
        messaging: Messaging,
        storage: Storage,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("ChangeCapture", "cdc", opts)
        cdc = settings.cdc
        self.instance = gcp.sql.DatabaseInstance(
            "shop",
            project=settings.project,
            region=settings.region,
            name=f"{settings.prefix}-{SHOP_INSTANCE}",
            database_version=cdc.database_version,
            deletion_protection=settings.protect_data,
            settings={
                "tier": cdc.tier,
                "edition": "ENTERPRISE",
                "availability_type": "ZONAL",
                "database_flags": [{"name": "cloudsql.logical_decoding", "value": "on"}],
                "ip_configuration": {"ipv4_enabled": True, "ssl_mode": "ENCRYPTED_ONLY"},  # no authorized networks
                "backup_configuration": {"enabled": True, "point_in_time_recovery_enabled": True},
                "deletion_protection_enabled": settings.protect_data,
                "user_labels": settings.labels,
            },
            opts=self.child,
        )
        self.database = gcp.sql.Database(
            "shop-database", project=settings.project, instance=self.instance.name, name=cdc.database, opts=self.child
        )
        self.user = gcp.sql.User(
            "debezium-user",
            project=settings.project,
            instance=self.instance.name,
            name=cdc.user,
            type="BUILT_IN",
            password_wo=settings.database_password,
            password_wo_version=settings.secrets_version,
            opts=self.child,
        )
        password = managed_secret(
            settings, "cdc-database-password", settings.database_password, ["debezium"], identities, self
        )
        # the file as the project keeps it, with the personal-data salt in the hashing property's name
        text = debezium.path.read_text(encoding="utf-8")
        rendered = pulumi.Output.secret(settings.pii_salt).apply(lambda salt: _render(text, salt))
        properties = managed_secret(settings, "debezium-properties", rendered, ["debezium"], identities, self)
        for topic in [debezium.topic(table) for table in debezium.tables] + [debezium.heartbeat_topic]:
            messaging.allow_publish(topic, "debezium", self)

        image = cdc.debezium_image
        if image.startswith("quay.io/"):  # through the remote repository: Cloud Run does not pull from quay.io
            image = f"{settings.region}-docker.pkg.dev/{settings.project}/{settings.prefix}-quay/{image.removeprefix('quay.io/')}"
        environment = [{"name": k, "value": v} for k, v in debezium_environment(settings, debezium).items()]
        environment.append(
            {"name": _PASSWORD, "value_source": {"secret_key_ref": {"secret": password.secret_id, "version": "latest"}}}
        )
        self.service = gcp.cloudrunv2.Service(
            "debezium",
            project=settings.project,
            location=settings.region,
            name=f"{settings.prefix}-debezium",
            ingress="INGRESS_TRAFFIC_INTERNAL_ONLY",
            deletion_protection=False,
            labels=settings.labels,
            scaling={"min_instance_count": 1, "max_instance_count": 1},  # one connector: one replication slot
            template={
                "service_account": identities.email("debezium"),
                "execution_environment": "EXECUTION_ENVIRONMENT_GEN2",
                "scaling": {"min_instance_count": 1, "max_instance_count": 1},
                "containers": [
                    {
                        "name": "debezium",
                        "image": image,
                        "ports": {"container_port": 8080},
                        "resources": {
                            "cpu_idle": False,
                            "startup_cpu_boost": True,  # CPU always allocated
                            "limits": {"cpu": "1", "memory": "2Gi"},
                        },
                        "envs": environment,
                        "volume_mounts": [{"name": "properties", "mount_path": "/debezium/config"}],
                        "depends_ons": ["cloud-sql-proxy"],
                        "startup_probe": {
                            "http_get": {"path": "/q/health/ready", "port": 8080},
                            "initial_delay_seconds": 10,
                            "period_seconds": 10,
                            "failure_threshold": 30,
                        },
                        "liveness_probe": {"http_get": {"path": "/q/health/live", "port": 8080}, "period_seconds": 30},
                    },
                    {
                        "name": "cloud-sql-proxy",
                        "image": CLOUD_SQL_PROXY_IMAGE,
                        # The database port on loopback, for Debezium only, and no health endpoint:
                        # Cloud Run's probes come from outside the container, so a probe would need
                        # a port open on every interface. The proxy listens as soon as it starts and
                        # dials Cloud SQL per connection; Debezium starts after it (depends_ons) and
                        # its own startup probe waits until the connector is connected.
                        "args": [
                            self.instance.connection_name,
                            f"--port={_PORT}",
                            "--address=127.0.0.1",
                            "--structured-logs",
                        ],
                        "resources": {"cpu_idle": False, "limits": {"cpu": "1", "memory": "512Mi"}},
                    },
                ],
                "volumes": [
                    {
                        "name": "properties",
                        "secret": {
                            "secret": properties.secret_id,
                            "items": [{"path": "application.properties", "version": "latest"}],
                        },
                    }
                ],
            },
            opts=self.after(self.user, self.database, password.version, properties.version),
        )
        self.register_outputs({"instance": self.instance.connection_name, "debezium": self.service.name})
