package org.dipro.hapi;

import ca.uhn.fhir.context.FhirVersionEnum;
import ca.uhn.fhir.jpa.api.config.JpaStorageSettings.ClientIdStrategyEnum;
import org.springframework.boot.context.properties.ConfigurationProperties;
import org.springframework.boot.context.properties.bind.DefaultValue;

/**
 * The {@code hapi.fhir.*} settings this server understands, under the property names of the
 * official HAPI FHIR JPA starter image ({@code hapi.fhir.client_id_strategy} and so on), so the
 * compose file's environment and {@code application.yaml} mean the same thing. Defaults are the
 * starter's. Everything else keeps HAPI's defaults ({@code JpaStorageSettings}, RestfulServer).
 */
@ConfigurationProperties(prefix = "hapi.fhir")
public record HapiFhirProperties(
		@DefaultValue("R4") FhirVersionEnum fhirVersion,
		@DefaultValue("ALPHANUMERIC") ClientIdStrategyEnum clientIdStrategy,
		@DefaultValue("20") int defaultPageSize,
		@DefaultValue("2147483647") int maxPageSize,
		@DefaultValue("false") boolean bulkExportEnabled,
		@DefaultValue("true") boolean expungeEnabled,
		@DefaultValue("false") boolean allowMultipleDelete,
		@DefaultValue("false") boolean massIngestionModeEnabled) {

	public HapiFhirProperties {
		if (fhirVersion != FhirVersionEnum.R4) {
			throw new IllegalArgumentException("hapi.fhir.fhir_version must be R4, not " + fhirVersion);
		}
	}
}
