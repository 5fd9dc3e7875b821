from django.urls import path
from django.views.generic import RedirectView

from billing import views

app_name = "billing"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="billing:invoice-list"), name="index"),  # what finance bookmarks
    path("invoices/", views.invoice_list, name="invoice-list"),
    path("invoices/<int:pk>.pdf", views.invoice_pdf_download, name="invoice-pdf"),
    path("invoices/<int:pk>.csv", views.invoice_csv_download, name="invoice-csv"),
]
