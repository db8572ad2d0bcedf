"""The demo's data in the admin, next to datapipe's runs and error groups."""

from django.contrib import admin

from .models import Airport, RawAirport, State, StateSummary


@admin.register(RawAirport)
class RawAirportAdmin(admin.ModelAdmin):
    list_display = ["iata", "data"]
    search_fields = ["iata"]


@admin.register(Airport)
class AirportAdmin(admin.ModelAdmin):
    list_display = ["iata", "name", "city", "state", "country", "latitude", "longitude"]
    list_filter = ["country"]
    search_fields = ["iata", "name", "city"]
    list_select_related = ["state"]
    raw_id_fields = ["raw"]


@admin.register(State)
class StateAdmin(admin.ModelAdmin):
    list_display = ["code", "name"]


@admin.register(StateSummary)
class StateSummaryAdmin(admin.ModelAdmin):
    list_display = ["__str__", "airports", "northernmost", "southernmost"]
    list_select_related = ["state"]
