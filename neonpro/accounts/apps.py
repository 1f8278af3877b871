from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "neonpro.accounts"
    label = "accounts"
    verbose_name = "Accounts"
