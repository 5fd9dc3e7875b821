from django.apps import AppConfig


class AgencyhubConfig(AppConfig):
    name = "agencyhub"
    verbose_name = "AgencyHub"
