from django.apps import AppConfig


class AgencyhubConfig(AppConfig):
    name = "agencyhub"
    verbose_name = "AgencyHub"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from agencyhub.db_pool import install

        connection_created.connect(install, dispatch_uid="agencyhub.db_pool.install")
