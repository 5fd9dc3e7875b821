from django.urls import path

from billing import views

app_name = "billing"

urlpatterns = [
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("invoices/<int:pk>.pdf", views.invoice_pdf_download, name="invoice-pdf"),
    path("invoices/<int:pk>.csv", views.invoice_csv_download, name="invoice-csv"),
]
