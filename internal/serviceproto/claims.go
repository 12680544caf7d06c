package serviceproto

// Claim types. The SDK signs client access tokens with short JWT claim
// names (its outbound map: NameIdentifier → "nameid", Role → "role"…)
// and reads OpenConnection's claims as .NET claim types; the service maps
// them back (the inbound map below: the same table as
// System.IdentityModel.Tokens.Jwt's ClaimTypeMapping, which the SDK
// copies in ClaimTypeMapping.cs). Without it Context.User.Identity.Name
// and FindFirst(ClaimTypes.NameIdentifier) break in the app.
const (
	ClaimNameIdentifier = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
	ClaimName           = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	ClaimRole           = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
	ClaimEmail          = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"

	// The SDK's own claims in client access tokens.
	ClaimPrefixSystem   = "asrs.s."    // service claims: not the user's
	ClaimPrefixUser     = "asrs.u."    // a user claim whose name is a reserved JWT name
	ClaimUserID         = "asrs.s.uid" // the user id (IUserIdProvider)
	ClaimServerName     = "asrs.s.sn"  // the server the client sticks to
	ClaimServerSticky   = "asrs.s.ssticky"
	ClaimDiagnostic     = "asrs.s.dc"
	ClaimHandshakeTime  = "asrs.s.cht"
	ClaimAuthType       = "asrs.s.aut"
	ClaimNameType       = "asrs.s.nt"
	ClaimRoleType       = "asrs.s.rt"
	ClaimCloseOnAuthExp = "asrs.s.coae"
	ClaimAuthExpiresOn  = "asrs.s.aeo"
)

const (
	xmlsoap  = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
	msws2008 = "http://schemas.microsoft.com/ws/2008/06/identity/claims/"
	certctx  = "http://schemas.microsoft.com/2012/12/certificatecontext/"
	reqctx   = "http://schemas.microsoft.com/2012/01/requestcontext/claims/"
	devctx   = "http://schemas.microsoft.com/2012/01/devicecontext/claims/"
)

// shortToLong is the inbound claim type map.
var shortToLong = map[string]string{
	"actort":                     "http://schemas.xmlsoap.org/ws/2009/09/identity/claims/actor",
	"birthdate":                  xmlsoap + "dateofbirth",
	"email":                      ClaimEmail,
	"family_name":                xmlsoap + "surname",
	"gender":                     xmlsoap + "gender",
	"given_name":                 xmlsoap + "givenname",
	"nameid":                     ClaimNameIdentifier,
	"sub":                        ClaimNameIdentifier,
	"website":                    xmlsoap + "webpage",
	"unique_name":                ClaimName,
	"oid":                        "http://schemas.microsoft.com/identity/claims/objectidentifier",
	"scp":                        "http://schemas.microsoft.com/identity/claims/scope",
	"tid":                        "http://schemas.microsoft.com/identity/claims/tenantid",
	"acr":                        "http://schemas.microsoft.com/claims/authnclassreference",
	"adfs1email":                 "http://schemas.xmlsoap.org/claims/EmailAddress",
	"adfs1upn":                   "http://schemas.xmlsoap.org/claims/UPN",
	"amr":                        "http://schemas.microsoft.com/claims/authnmethodsreferences",
	"authmethod":                 msws2008 + "authenticationmethod",
	"certapppolicy":              certctx + "extension/applicationpolicy",
	"certauthoritykeyidentifier": certctx + "extension/authoritykeyidentifier",
	"certbasicconstraints":       certctx + "extension/basicconstraints",
	"certeku":                    certctx + "extension/eku",
	"certissuer":                 certctx + "field/issuer",
	"certissuername":             certctx + "field/issuername",
	"certkeyusage":               certctx + "extension/keyusage",
	"certnotafter":               certctx + "field/notafter",
	"certnotbefore":              certctx + "field/notbefore",
	"certpolicy":                 certctx + "extension/certificatepolicy",
	"certpublickey":              xmlsoap + "rsa",
	"certrawdata":                certctx + "field/rawdata",
	"certserialnumber":           msws2008 + "serialnumber",
	"certsignaturealgorithm":     certctx + "field/signaturealgorithm",
	"certsubject":                certctx + "field/subject",
	"certsubjectaltname":         certctx + "extension/san",
	"certsubjectkeyidentifier":   certctx + "extension/subjectkeyidentifier",
	"certsubjectname":            certctx + "field/subjectname",
	"certtemplateinformation":    certctx + "extension/certificatetemplateinformation",
	"certtemplatename":           certctx + "extension/certificatetemplatename",
	"certthumbprint":             xmlsoap + "thumbprint",
	"certx509version":            certctx + "field/x509version",
	"clientapplication":          reqctx + "x-ms-client-application",
	"clientip":                   reqctx + "x-ms-client-ip",
	"clientuseragent":            reqctx + "x-ms-client-user-agent",
	"commonname":                 "http://schemas.xmlsoap.org/claims/CommonName",
	"denyonlyprimarygroupsid":    msws2008 + "denyonlyprimarygroupsid",
	"denyonlyprimarysid":         msws2008 + "denyonlyprimarysid",
	"denyonlysid":                xmlsoap + "denyonlysid",
	"devicedispname":             devctx + "displayname",
	"deviceid":                   devctx + "identifier",
	"deviceismanaged":            devctx + "ismanaged",
	"deviceostype":               devctx + "ostype",
	"deviceosver":                devctx + "osversion",
	"deviceowner":                devctx + "userowner",
	"deviceregid":                devctx + "registrationid",
	"endpointpath":               reqctx + "x-ms-endpoint-absolute-path",
	"forwardedclientip":          reqctx + "x-ms-forwarded-client-ip",
	"group":                      "http://schemas.xmlsoap.org/claims/Group",
	"groupsid":                   msws2008 + "groupsid",
	"idp":                        "http://schemas.microsoft.com/identity/claims/identityprovider",
	"insidecorporatenetwork":     "http://schemas.microsoft.com/ws/2012/01/insidecorporatenetwork",
	"isregistereduser":           devctx + "isregistereduser",
	"ppid":                       xmlsoap + "privatepersonalidentifier",
	"primarygroupsid":            msws2008 + "primarygroupsid",
	"primarysid":                 msws2008 + "primarysid",
	"proxy":                      reqctx + "x-ms-proxy",
	"pwdchgurl":                  "http://schemas.microsoft.com/ws/2012/01/passwordchangeurl",
	"pwdexpdays":                 "http://schemas.microsoft.com/ws/2012/01/passwordexpirationdays",
	"pwdexptime":                 "http://schemas.microsoft.com/ws/2012/01/passwordexpirationtime",
	"relyingpartytrustid":        reqctx + "relyingpartytrustid",
	"role":                       ClaimRole,
	"roles":                      ClaimRole,
	"upn":                        xmlsoap + "upn",
	"winaccountname":             msws2008 + "windowsaccountname",
}

// longToShort is the outbound map: the first short name of each long
// type in the table's order, as the SDK builds it (NameIdentifier →
// "nameid", Role → "role").
var longToShort = func() map[string]string {
	m := make(map[string]string, len(shortToLong))
	for _, short := range []string{"nameid", "role"} { // the SDK's table lists these before "sub" and "roles"
		m[shortToLong[short]] = short
	}
	for short, long := range shortToLong {
		if _, ok := m[long]; !ok {
			m[long] = short
		}
	}
	return m
}()

// LongClaimType is the .NET claim type of a JWT claim name: the long URI
// for a short name the inbound map knows, else the name itself.
func LongClaimType(name string) string {
	if long, ok := shortToLong[name]; ok {
		return long
	}
	return name
}

// ShortClaimType is the JWT claim name the SDK writes for a .NET claim
// type: the short name for a long URI the outbound map knows, else the
// type itself.
func ShortClaimType(typ string) string {
	if short, ok := longToShort[typ]; ok {
		return short
	}
	return typ
}
